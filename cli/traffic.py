"""Commands that move traces: produce, demo (the whole pipeline end to end), replay into a dataset.

Contract: the commands are thin over ``operations`` (produce, demo, replay); the demo runs its phases as plain
functions (``operations.demo``), each failing as one line naming the phase; heavy imports stay inside each command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from cli._utils import fail as _fail
from cli._utils import fails_as, family
from cli._utils import settings as _settings
from schemas import paths

commands, register = family()


@commands.command()
def replay(
    out: Path = typer.Option(..., "--out", help="Directory for dataset.jsonl, dataset.parquet and manifest.json."),
    from_offset: Optional[list[str]] = typer.Option(
        None, "--from-offset", help="Start (inclusive): OFFSET, PARTITION:OFFSET or TOPIC:PARTITION:OFFSET "
                                    "(repeatable; default: the earliest retained)."),
    to_offset: Optional[list[str]] = typer.Option(
        None, "--to-offset", help="End (exclusive), same forms (default: the end captured at start)."),
    since: Optional[str] = typer.Option(None, help="Only traces produced at or after this ISO time (UTC if naive)."),
    until: Optional[str] = typer.Option(None, help="Only traces produced at or before this ISO time."),
    swap: bool = typer.Option(False, help="Also write each pairwise row in the other answer order (label swapped)."),
    reference_drop: float = typer.Option(0.0, help="Also write this fraction of the rows with a reference without it."),
    format_: str = typer.Option("jsonl,parquet", "--format", help="Comma-separated: jsonl, parquet."),
    gold: bool = typer.Option(True, help="Label with the human gold labels in ClickHouse where no frontier verdict."),
    group_id: Optional[str] = typer.Option(None, help="Consumer group id (default: a fresh judgeline-replay-<id>)."),
    idle_timeout_s: float = typer.Option(60.0, "--idle-timeout", help="Fail when no message arrives for this long."),
) -> None:
    """Replay the traces and frontier-verdicts topics into a retrain dataset (gold format + Parquet + manifest)."""
    from operations.replay import ReplayError, ReplayOptions, parse_offset, parse_time
    from operations.replay import replay as run_replay

    settings = _settings()
    try:
        options = ReplayOptions(
            out=out, from_offsets=tuple(parse_offset(v, "--from-offset") for v in from_offset or ()),
            to_offsets=tuple(parse_offset(v, "--to-offset") for v in to_offset or ()),
            since=parse_time(since, "--since"), until=parse_time(until, "--until"), swap=swap,
            reference_drop=reference_drop, formats=tuple(f.strip() for f in format_.split(",") if f.strip()),
            gold=gold, group_id=group_id, idle_timeout_s=idle_timeout_s)
        manifest = run_replay(settings, options, log_line=typer.echo)
    except ReplayError as e:
        _fail(str(e))
    c = manifest["counts"]
    typer.echo(f"read {c.get('read', 0)} messages: {c.get('invalid', 0)} not traces, "
               f"{c.get('out_of_time_range', 0)} out of the time range, {c.get('duplicate_trace_id', 0)} repeated "
               f"trace ids, {c.get('duplicate_content', 0)} repeated items, {c.get('unlabelled', 0)} unlabelled; "
               f"wrote {c.get('written', 0)} rows ({c.get('labelled', 0)} labelled + {c.get('augmented', 0)} "
               f"augmented) in {manifest['seconds']['total']} s")
    typer.echo(f"label sources: {manifest['label_sources'] or 'none'}; manifest {out / 'manifest.json'}")
    if manifest["train_command"]:
        typer.echo(f"next: {manifest['train_command']}")


@commands.command()
def produce(
    gold: Optional[Path] = typer.Option(None, "--gold", help="Gold-format file: each item becomes a trace."),
    otel: Optional[Path] = typer.Option(None, "--otel", help="JSONL file of OpenTelemetry GenAI spans."),
    rate: Optional[float] = typer.Option(None, help="Messages per second (default: as fast as possible)."),
    limit: Optional[int] = typer.Option(None, help="Publish at most this many traces."),
    id_prefix: str = typer.Option("", help="Prefix every trace id (e.g. a run id, to tell runs apart)."),
    tenant: Optional[str] = typer.Option(None, help="Tenant of every trace from --gold (default: 'default')."),
    malformed: int = typer.Option(0, help="Also publish this many malformed messages (they become dead letters)."),
    linger_ms: int = typer.Option(5, "--linger-ms", min=0, max=5000,
                                  help="How long the producer gathers messages into one request (librdkafka's "
                                       "linger.ms; it counts in each trace's latency)."),
) -> None:
    """Publish traces to the traces topic, from a gold-format file or OTel GenAI spans."""
    from itertools import islice

    from operations.produce import (
        malformed_messages,
        traces_from_gold,
        traces_from_otel,
    )
    from operations.produce import produce as run_produce
    from schemas.base import InvalidMessage

    if (gold is None) == (otel is None):
        _fail("pass exactly one of --gold FILE or --otel FILE")
    source = gold or otel
    if not source.is_file():
        _fail(f"{source} does not exist")
    if rate is not None and rate <= 0:
        _fail("--rate must be positive")
    settings = _settings()
    traces, bad = [], 0
    parsed_lines = traces_from_gold(source, id_prefix, tenant) if gold else traces_from_otel(source, id_prefix)
    for number, parsed in parsed_lines:
        if isinstance(parsed, InvalidMessage):
            bad += 1
            typer.echo(f"{source}:{number}: skipped: {parsed.reason}", err=True)
        else:
            traces.append(parsed)
    messages = [(t.trace_id.encode(), t.to_bytes()) for t in islice(traces, limit)]
    messages += malformed_messages(malformed, id_prefix)
    with fails_as(f"producing to Kafka at {settings.kafka.bootstrap_servers}"):
        result = run_produce(settings, messages, rate=rate, linger_ms=linger_ms)
    typer.echo(f"published {result.sent} messages to {settings.kafka.topics.traces} in {result.seconds:.1f} s "
               f"({len(messages) - malformed} traces, {malformed} malformed; {bad} lines skipped)")
    if result.failed:
        _fail(f"{result.failed} messages were not delivered: {result.first_error}")


@commands.command()
def demo(
    gold_dir: Path = typer.Option(
        paths.SHARED_GOLD,
        help="Directory of the shared gold sets (default: ../shared/data/gold beside the checkout).",
    ),
    gold: Optional[Path] = typer.Option(None, "--gold", help="Gold-format file to stream (default: pandalm-test.jsonl "
                                                              "from --gold-dir, else the project's synthetic sample)."),
    limit: Optional[int] = typer.Option(None, help="Stream only the first N items."),
    rate: float = typer.Option(20.0, help="Traces per second offered (0: all at once, a burst)."),
    malformed: int = typer.Option(5, help="Malformed messages sent along (they become dead letters)."),
    timeout_s: float = typer.Option(900.0, help="Give up waiting for the pipeline after this long."),
) -> None:
    """The whole system: stack, judge, workers, traces streamed through the pipeline, the report, and the routing
    policy the controller fits from the run's evidence."""
    import time

    from operations import demo as flow

    started = time.monotonic()
    typer.secho("1. the embedded stack", bold=True)
    with fails_as("starting the embedded stack"):
        settings = flow.prepare_stack(_settings(), log=typer.echo)
    typer.secho("2. the judge in Triton", bold=True)
    with fails_as("training or loading the judge"):
        version = flow.ensure_judge(settings, gold_dir, log=typer.echo)
    typer.echo(f"   Triton serves {settings.triton.model_name} version {version}")
    source = gold or flow.default_gold(settings, gold_dir)
    if not source.is_file():
        _fail(f"{source} does not exist")
    # the frontier here is a local replay of recorded verdicts: its rate limit and budget are raised accordingly
    worker_settings = settings.model_copy(update={"frontier": settings.frontier.model_copy(update={
        "rate_limit_rps": max(settings.frontier.rate_limit_rps, 200.0),
        "concurrency": max(settings.frontier.concurrency, 16),
        "budget_usd": max(settings.frontier.budget_usd, 100.0)})})
    run = flow.Run(flow.new_run_id(), worker_settings, source)
    typer.secho("3. the pipeline: frontier replay, inline and frontier workers", bold=True)
    try:
        with fails_as("the pipeline", hint=f"worker logs in {settings.state_dir / 'logs'}"):
            flow.start_processes(run, log=typer.echo)
            typer.secho(f"4. streaming {source.name} as traces (run {run.run_id}, "
                        f"{'a burst' if not rate else f'{rate:g} traces/s'})", bold=True)
            flow.publish(run, limit=limit, rate=rate or None, malformed=malformed)
            typer.echo(f"   published {run.produced_traces} traces and {run.produced_malformed} malformed messages in "
                       f"{run.produce_seconds:.1f} s; waiting for every verdict")
            store = flow.Store(run)
            done = flow.wait_done(run, store, timeout_s=timeout_s, log=typer.echo)
            typer.secho("5. report (from ClickHouse)", bold=True)
            result = flow.report(run, store, version)
    except KeyboardInterrupt:
        _fail("interrupted; the workers are stopped, the stack keeps running (make down)", 130)
    finally:
        flow.stop_processes(run)
    result["complete"] = done
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    out = settings.state_dir / "demo-report.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    typer.echo(flow.format_report(result, result["wall_seconds"]))
    typer.echo(f"   report JSON: {out}; ClickHouse tables in database {settings.clickhouse.database}; "
               "the stack keeps running (make down stops it)")
    gold_note = ("   gold agreement: 'held out' counts only items the served judge was neither trained nor "
                 "calibrated on (the judge may have been trained on part of this file); 'cascade' is the verdict a "
                 "user gets: the frontier's where it was asked, else the inline judge's.")
    typer.echo(gold_note)
    typer.secho("6. the routing policy fitted from this run's evidence (what `judgeline route-policy update` does)",
                bold=True)
    with fails_as("fitting the routing policy"):
        from cli.routing import print_result
        from operations.route_policy import update

        print_result(update(settings))
    typer.echo("   before any policy every trace was routed (the safe cold start); workers apply this policy from "
               "their next batch (routing-policies topic); a segment keeps routing until its own evidence passes")
    if not done or not result["all_accounted"]:
        _fail(f"not every trace was accounted for within {timeout_s:.0f} s")

