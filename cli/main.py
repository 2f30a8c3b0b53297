"""The `judgeline` command line (Typer). Each subcommand imports its heavy modules lazily, so `judgeline --help`
and `judgeline config` stay fast.

Contract: every command reads the one ``Settings`` object (env prefix ``JUDGELINE_``), resolved against the
running embedded stack (``stack.services.effective_settings``); errors are printed as one clear line and exit
non-zero; secrets are printed masked, never in clear.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from schemas import paths

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="judgeline: a streaming LLM-judge service.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of judgeline.")
schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schema of the message types.")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")


@app.callback()
def _main() -> None:
    import logging

    logging.basicConfig(
        level=_settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _settings():
    from pydantic import ValidationError

    from schemas.base import describe_validation_error
    from schemas.settings import Settings
    from stack.services import effective_settings

    try:
        return effective_settings(Settings())
    except ValidationError as e:
        _fail(f"invalid settings: {describe_validation_error(e)} (set them with JUDGELINE_* variables)")


def _fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def config(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of NAME=value lines.")) -> None:
    """Print the effective settings, secrets masked."""
    masked = _settings().masked()
    if as_json:
        typer.echo(json.dumps(masked, indent=2, default=str))
        return

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}__{k.upper()}" if prefix else f"JUDGELINE_{k.upper()}", v)
        else:
            typer.echo(f"{prefix}={'' if value is None else value}")

    walk("", masked)


@app.command()
def up(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Start only these services (repeatable)."),
) -> None:
    """Install what is missing and start the embedded stack (broker, ClickHouse store, Triton) on 127.0.0.1."""
    from stack import services as stack
    from stack.process import ServiceError

    names = tuple(only) if only else stack.SERVICE_NAMES
    unknown = set(names) - set(stack.SERVICE_NAMES)
    if unknown:
        _fail(f"unknown service {sorted(unknown)}; choose from {', '.join(stack.SERVICE_NAMES)}")
    settings = _settings()
    try:
        stack.up(settings, names, log=typer.echo)
    except (ServiceError, OSError) as e:
        _fail(str(e))
    typer.echo(f"state, PIDs and logs in {settings.state_dir}")


@app.command()
def down() -> None:
    """Stop the services `judgeline up` started (by recorded PID; nothing else is touched)."""
    from stack import services as stack

    if not stack.down(_settings(), log=typer.echo):
        typer.echo("nothing was running")


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Report each embedded service: state, PID, address, log. Exits 1 unless all are healthy."""
    from dataclasses import asdict

    from stack import services as stack

    rows = stack.status(_settings())
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        for r in rows:
            color = typer.colors.GREEN if r.state == "healthy" else typer.colors.RED
            pid = f"pid {r.pid}" if r.pid else ""
            typer.echo(f"{r.name:<11} {typer.style(r.state, fg=color):<20} {pid:<11} {r.address}")
    if any(r.state != "healthy" for r in rows):
        raise typer.Exit(1)


@app.command()
def migrate() -> None:
    """Apply the ClickHouse migrations (idempotent) to the configured store."""
    from stack.migrate import MigrationDrift
    from stack.migrate import migrate as run
    from streams.clickhouse import connect, describe

    settings = _settings()
    try:
        result = run(connect(settings), settings.clickhouse.database)
    except MigrationDrift as e:
        _fail(str(e))
    except Exception as e:
        _fail(f"cannot migrate {describe(settings)}: {e}")
    applied = ", ".join(map(str, result.applied)) or "none"
    typer.echo(f"{describe(settings)}, database {settings.clickhouse.database}: applied {applied}; "
               f"already applied {len(result.already)}")


@topics_app.command("create")
def topics_create() -> None:
    """Create every judgeline topic that does not exist yet."""
    from stack.topics import ensure_topics

    settings = _settings()
    try:
        created = ensure_topics(settings)
    except Exception as e:
        _fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {e}")
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """List topics and their partition counts."""
    from stack.topics import list_topics

    settings = _settings()
    try:
        topics = list_topics(settings)
    except Exception as e:
        _fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {e}")
    for name, partitions in sorted(topics.items()):
        typer.echo(f"{name}\t{partitions}")


@schemas_app.command("export")
def schemas_export(
    out: Path = typer.Option(None, help="Directory to write to (default: schemas/json in the source tree)."),
) -> None:
    """Write the JSON Schema of every message type as <Name>.json."""
    from schemas.jsonschema import JSON_DIR, render, schemas

    target = out or JSON_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        (target / f"{name}.json").write_text(render(schema))
    typer.echo(f"wrote {len(schemas())} schemas to {target}")


@app.command()
def validate(
    kind: str = typer.Argument(..., help="Message type: Trace, Verdict, FrontierRequest, GoldLabel, ..."),
    file: Path = typer.Argument(..., help="A JSON Lines file, '-' for standard input."),
) -> None:
    """Validate JSON Lines messages; prints one line per bad message naming the field and the fix."""
    from schemas.base import InvalidMessage, parse_json_bytes
    from schemas.jsonschema import MESSAGE_TYPES

    models = {m.__name__: m for m in MESSAGE_TYPES}
    if kind not in models:
        _fail(f"unknown message type {kind!r}; choose from {', '.join(models)}")
    stream = sys.stdin.buffer if str(file) == "-" else open(file, "rb")
    bad = good = 0
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            parse_json_bytes(models[kind], line.rstrip(b"\r\n"))
            good += 1
        except InvalidMessage as e:
            bad += 1
            typer.echo(f"line {number}: {e.reason}")
    typer.echo(f"{good} valid, {bad} invalid")
    if bad:
        raise typer.Exit(1)


@app.command("frontier-replay")
def frontier_replay(
    gold: Optional[list[Path]] = typer.Option(
        None, "--gold", help="Gold-format file with recorded verdicts (repeatable; default: ../shared/data/gold/*)."),
    judge: Optional[list[str]] = typer.Option(
        None, "--judge", help="Judge name to serve (repeatable; default: JUDGELINE_FRONTIER__MODEL)."),
    port: Optional[int] = typer.Option(None, help="Port (default: the port of JUDGELINE_FRONTIER__BASE_URL, or 8090)."),
    latency_ms: float = typer.Option(0.0, help="Fixed latency added to every chat completion."),
    jitter_ms: float = typer.Option(0.0, help="Uniform random extra latency, up to this much."),
    rate_limit_fraction: float = typer.Option(0.0, help="Fraction of requests answered 429 with Retry-After."),
    server_error_fraction: float = typer.Option(0.0, help="Fraction of requests answered 500."),
    retry_after_s: float = typer.Option(1.0, help="The Retry-After of an injected 429."),
    seed: int = typer.Option(0, help="Seed of the latency jitter."),
) -> None:
    """Serve recorded teacher verdicts as an OpenAI-compatible frontier judge on 127.0.0.1 (foreground)."""
    from urllib.parse import urlsplit

    from doubles.frontier_replay import DEFAULT_GOLD_DIR, Faults, serve

    settings = _settings()
    files = list(gold or sorted(DEFAULT_GOLD_DIR.glob("*.jsonl")))
    if not files:
        _fail(f"no gold files: none in {DEFAULT_GOLD_DIR}; pass --gold FILE")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"gold file not found: {', '.join(missing)}")
    try:
        faults = Faults(latency_ms, jitter_ms, rate_limit_fraction, server_error_fraction, retry_after_s, seed)
    except ValueError as e:
        _fail(str(e))
    port = port or urlsplit(settings.frontier.base_url).port or 8090
    typer.echo(f"frontier replay on http://{settings.stack.bind_host}:{port}/v1 (Ctrl-C stops it)")
    serve(files, settings.stack.bind_host, port, tuple(judge or (settings.frontier.model,)), faults)


FINETUNE_LAYERS_DEFAULT = 1  # measured: see README, "The distilled judge"


def _latest_model_pointer(settings) -> Path:
    return settings.state_dir / "models" / "LATEST"


@app.command()
def train(
    gold: list[Path] = typer.Option(..., "--gold", help="Gold-format file(s) to learn from (repeatable)."),
    teacher: str = typer.Option("gpt-4", help="Whose recorded verdict is the label; 'human' for the human label."),
    fallback_human: bool = typer.Option(False, help="Use the human label where the teacher has no verdict."),
    out: Optional[Path] = typer.Option(None, help="Model directory (default: <state dir>/models/student-<time>)."),
    val: float = typer.Option(0.15, help="Fraction of questions held out for early stopping and calibration."),
    test: float = typer.Option(0.25, help="Fraction of questions held out for the final measurement."),
    seed: int = typer.Option(13, help="Seed of the split and of training."),
    swap: bool = typer.Option(True, help="Swap augmentation: each pair in both orders, label swapped."),
    reference_drop: bool = typer.Option(True, help="Items with a reference also train without it."),
    epochs: int = typer.Option(60, help="At most this many epochs (early stopping on the validation loss)."),
    limit_per_file: Optional[int] = typer.Option(None, help="Use only the first N items of each source."),
    skip_invalid: bool = typer.Option(False, help="Leave out lines that do not parse instead of stopping."),
    finetune_layers: int = typer.Option(
        FINETUNE_LAYERS_DEFAULT, min=0, max=6,
        help="Fine-tune the encoder's top N layers with the heads (0: frozen encoder, heads only)."),
    finetune_epochs: int = typer.Option(2, min=1, help="Epochs of fine-tuning (the best on validation is kept)."),
) -> None:
    """Distil the student judge from recorded teacher verdicts; calibrate and measure it on held-out questions."""
    from datetime import datetime

    from judge_engine.dataset import GoldFileError
    from judge_engine.training.trainer import TrainConfig
    from judge_engine.training.trainer import train as run_training

    settings = _settings()
    out = out or settings.state_dir / "models" / f"student-{datetime.now():%Y%m%d-%H%M%S}"
    cfg = TrainConfig(gold=tuple(gold), out=out, teacher=teacher, fallback_human=fallback_human, val_fraction=val,
                      test_fraction=test, seed=seed, swap=swap, reference_drop=reference_drop, epochs=epochs,
                      limit_per_file=limit_per_file, skip_invalid=skip_invalid, finetune_layers=finetune_layers,
                      finetune_epochs=finetune_epochs)
    typer.echo(f"training on {', '.join(map(str, gold))} (labels: {teacher})")
    try:
        result = run_training(cfg, log=typer.echo)
    except (GoldFileError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    pointer = _latest_model_pointer(settings)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(result.model_dir.resolve()))
    for kind, m in result.test.items():
        typer.echo(
            f"  held-out {kind} (n={m['n']}, labels {m['label_sources']}): accuracy vs those labels "
            f"{100 * m['accuracy_vs_training_label']:.1f}%, vs human {100 * m['accuracy_vs_human']:.1f}% (the labels "
            f"themselves {100 * m['training_label_accuracy_vs_human']:.1f}%, majority label "
            f"{100 * m['majority_baseline_vs_human']:.1f}%), kappa vs human {m['kappa_vs_human']:.3f}, swap "
            f"consistency {100 * m['swap_consistency']:.1f}%, ECE {m['ece_uncalibrated']:.3f} -> {m['ece']:.3f} "
            f"(T={result.temperature[kind]:.2f})"
        )
    typer.echo(f"  took {result.seconds}; model in {result.model_dir} (reliability.png, training_report.json)")
    typer.echo("next: judgeline export")


@app.command()
def export(
    model: Optional[Path] = typer.Option(None, help="Trained model directory (default: the last `judgeline train`)."),
    version: Optional[int] = typer.Option(None, help="Version number (default: the next free one)."),
    deploy_now: bool = typer.Option(True, "--deploy/--no-deploy", help="Load it into the running Triton, if any."),
) -> None:
    """Write a trained judge as the next version of the Triton model (and load it into a running Triton)."""
    from judge_engine.training.export import export as run_export
    from stack.triton import model_repository

    settings = _settings()
    if model is None:
        pointer = _latest_model_pointer(settings)
        if not pointer.exists():
            _fail("no trained judge yet: run `judgeline train --gold FILE` first, or pass --model DIR")
        model = Path(pointer.read_text().strip())
    try:
        target = run_export(model, model_repository(settings), settings.triton.model_name, version)
    except (FileNotFoundError, FileExistsError) as e:
        _fail(str(e))
    typer.echo(f"exported {model} as {target}")
    if deploy_now:
        deploy()


@app.command()
def deploy() -> None:
    """Load the newest version of the judge into the running Triton (repository API; traffic keeps flowing)."""
    from stack import triton
    from stack.services import running_service

    settings = _settings()
    record = running_service(settings, "triton")
    if record is None and not settings.triton.http_url:
        _fail("no Triton is running (judgeline up)")
    try:
        version = triton.load_model(settings, settings.triton.model_name)
    except Exception as e:  # noqa: BLE001 - shown to the user as one line
        _fail(f"loading {settings.triton.model_name} into Triton at {settings.triton.http_url} failed: {e}")
    typer.echo(f"Triton at {settings.triton.http_url} serves {settings.triton.model_name} version {version}")


@app.command()
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


@app.command(name="eval")
def eval_(
    gold: Path = typer.Option(..., "--gold", help="Gold-format file to measure the served judge on."),
    frontier: Optional[str] = typer.Option(None, help="Teacher in the file acting as the frontier judge "
                                                      "(default: the judge's own teacher, else gpt-4)."),
    threshold: Optional[float] = typer.Option(None, help="Routing threshold to report (default: the setting)."),
    out: Path = typer.Option(Path("metrics.json"), help="JSON report; PNGs are written beside it."),
    include_trained: bool = typer.Option(False, help="Also score items the judge was trained on (not honest)."),
    skip_invalid: bool = typer.Option(False, help="Leave out lines that do not parse instead of stopping."),
) -> None:
    """Measure the served judge on a gold file: agreement with humans and teacher, ECE, cascade curve."""
    from judge_engine.dataset import GoldFileError
    from judge_engine.evaluation.evaluate import evaluate, format_table
    from stack.triton import model_repository

    settings = _settings()
    try:
        report = evaluate(settings, gold, frontier=frontier, threshold=threshold, out=out,
                          include_trained=include_trained, skip_invalid=skip_invalid,
                          repository=model_repository(settings))
    except (GoldFileError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    except Exception as e:  # noqa: BLE001 - the judge or Triton failed: one line, not a traceback
        from judge_engine.failures import describe

        _fail(f"judging through Triton at {settings.triton.url} failed: {describe(e)}")
    typer.echo(format_table(report))
    stem = out.with_suffix("")
    typer.echo(f"wrote {out}, {stem}.cascade.png, {stem}.reliability.png")


worker_app = typer.Typer(no_args_is_help=True, help="Stream workers (Faust), in the foreground until SIGTERM.")
app.add_typer(worker_app, name="worker")


def _run_worker(role: str, stub_judge_ms: Optional[float] = None) -> None:
    from streams.worker import main as run_worker

    try:
        run_worker(_settings(), role, stub_judge_ms)  # type: ignore[arg-type]
    except ValueError as e:
        _fail(str(e))


@worker_app.command("inline")
def worker_inline(
    stub_judge_ms: Optional[float] = typer.Option(
        None, help="Benchmarks only: replace the Triton judge by a constant verdict after this many ms per batch."),
) -> None:
    """Traces -> micro-batches -> Triton judge -> ClickHouse; routed traces -> the frontier-requests topic."""
    _run_worker("inline", stub_judge_ms)


@worker_app.command("frontier")
def worker_frontier() -> None:
    """Frontier requests -> frontier judge (openai client) -> frontier verdicts and disagreements in ClickHouse."""
    _run_worker("frontier")


@app.command()
def produce(
    gold: Optional[Path] = typer.Option(None, "--gold", help="Gold-format file: each item becomes a trace."),
    otel: Optional[Path] = typer.Option(None, "--otel", help="JSONL file of OpenTelemetry GenAI spans."),
    rate: Optional[float] = typer.Option(None, help="Messages per second (default: as fast as possible)."),
    limit: Optional[int] = typer.Option(None, help="Publish at most this many traces."),
    id_prefix: str = typer.Option("", help="Prefix every trace id (e.g. a run id, to tell runs apart)."),
    tenant: Optional[str] = typer.Option(None, help="Tenant of every trace from --gold (default: 'default')."),
    malformed: int = typer.Option(0, help="Also publish this many malformed messages (they become dead letters)."),
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
    try:
        result = run_produce(settings, messages, rate=rate)
    except Exception as e:  # noqa: BLE001 - one line for the user
        _fail(f"cannot produce to Kafka at {settings.kafka.bootstrap_servers}: {e}")
    typer.echo(f"published {result.sent} messages to {settings.kafka.topics.traces} in {result.seconds:.1f} s "
               f"({len(messages) - malformed} traces, {malformed} malformed; {bad} lines skipped)")
    if result.failed:
        _fail(f"{result.failed} messages were not delivered: {result.first_error}")


@app.command()
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
    """The whole system: stack, judge, workers, traces streamed through the pipeline, and the report."""
    import time

    from operations import demo as flow

    started = time.monotonic()
    typer.secho("1. the embedded stack", bold=True)
    up(only=None)
    try:
        status(as_json=False)
    except typer.Exit as e:
        if e.exit_code:
            _fail("a service is not healthy; see its log above")
    migrate()
    settings = _settings()
    typer.secho("2. the judge in Triton", bold=True)
    try:
        version = flow.ensure_judge(settings, gold_dir, log=typer.echo)
    except Exception as e:  # noqa: BLE001 - one line for the user
        _fail(f"no judge to serve: {e}")
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
    except Exception as e:  # noqa: BLE001 - the worker logs under the state directory say more
        from judge_engine.failures import describe

        _fail(f"the pipeline failed: {describe(e)} (worker logs in {settings.state_dir / 'logs'})")
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
    if not done or not result["all_accounted"]:
        _fail(f"not every trace was accounted for within {timeout_s:.0f} s")


gold_app = typer.Typer(no_args_is_help=True, help="The human-labelled gold set in ClickHouse.")
app.add_typer(gold_app, name="gold")


@gold_app.command("import")
def gold_import(
    file: Path = typer.Argument(..., help="A gold-format JSON Lines file (../shared/docs/gold-format.md)."),
    source: Optional[str] = typer.Option(None, help="Store every item under this source instead of its own."),
) -> None:
    """Validate a gold file and load it into gold_labels (idempotent: importing twice leaves the same rows)."""
    from operations.analytics import StoreNotReady, connect_store
    from operations.gold_import import import_gold
    from streams.sink import ClickHouseStore

    if not file.is_file():
        _fail(f"{file} does not exist")
    if source is not None and not source.strip():
        _fail("--source must not be empty")
    settings = _settings()
    try:
        client = connect_store(settings)
    except StoreNotReady as e:
        _fail(str(e))
    try:
        result = import_gold(ClickHouseStore(settings, client=client), client, settings.clickhouse.database, file,
                             source)
    except Exception as e:  # noqa: BLE001 - one line for the user
        from judge_engine.failures import describe

        _fail(f"importing {file} failed: {describe(e)}")
    for error in result.errors:
        typer.echo(str(error), err=True)
    typer.echo(result.summary())
    if result.errors:
        _fail(f"{result.invalid} invalid lines were not imported (each listed above with the field and the fix)")


def _analytics(since: Optional[str], until: Optional[str], tenant: Optional[str], frontier_judge: Optional[str],
               **options):
    """(settings, ``operations.analytics.Analytics`` over the window) for calibrate and report."""
    from datetime import datetime

    from operations.analytics import Analytics, StoreNotReady, Window, connect_store

    def parse(value: Optional[str], name: str):
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            _fail(f"{name} {value!r} is not an ISO time; write e.g. 2026-11-01 or 2026-11-01T12:00:00Z")

    window = Window(parse(since, "--since"), parse(until, "--until"), tenant)
    settings = _settings()
    try:
        client = connect_store(settings)
    except StoreNotReady as e:
        _fail(str(e))
    return settings, Analytics(client, settings.clickhouse.database, window,
                               judge=frontier_judge or settings.frontier.model, **options)


@app.command()
def calibrate(
    since: Optional[str] = typer.Option(None, help="Only traces at or after this time (ISO; UTC unless stated)."),
    until: Optional[str] = typer.Option(None, help="Only traces before this time (ISO)."),
    tenant: Optional[str] = typer.Option(None, help="Only this tenant (default: all)."),
    out: Optional[Path] = typer.Option(None, help="Directory for calibration.json and the PNGs "
                                                  "(default: <state dir>/calibration)."),
    judge_version: Optional[str] = typer.Option(None, help="Inline judge version (default: the newest per "
                                                           "criterion in the window)."),
    frontier_judge: Optional[str] = typer.Option(None, help="Frontier judge name (default: JUDGELINE_FRONTIER__MODEL)."),
    id_prefix: str = typer.Option("", help="Trace ids are gold ids with this prefix (produce --id-prefix)."),
) -> None:
    """Calibration report from ClickHouse: both judges vs gold, agreement by confidence, threshold recommendation."""
    from operations.calibrate import calibrate as run
    from operations.calibrate import format_summary

    settings, analytics = _analytics(since, until, tenant, frontier_judge, id_prefix=id_prefix, buckets=20)
    out = out or settings.state_dir / "calibration"
    report = run(settings, analytics, out, judge_version)
    typer.echo(format_summary(report))
    for warning in report["warnings"]:
        typer.secho(f"WARNING: {warning}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {out / 'calibration.json'}, {report['plots']['reliability']}, "
               f"{report['plots']['cost_accuracy']}")


@app.command()
def report(
    since: Optional[str] = typer.Option(None, help="Only traces at or after this time (ISO; UTC unless stated)."),
    until: Optional[str] = typer.Option(None, help="Only traces before this time (ISO)."),
    tenant: Optional[str] = typer.Option(None, help="Only this tenant (default: all)."),
    out: Optional[Path] = typer.Option(None, help="Directory for report.html (default: <state dir>/report)."),
    interval: str = typer.Option("hour", help="Period of the time series: minute, hour or day."),
    frontier_judge: Optional[str] = typer.Option(None, help="Frontier judge name (default: JUDGELINE_FRONTIER__MODEL)."),
) -> None:
    """Analytics from ClickHouse: verdict/fail rates, routing and spend, disagreement and drift, latency; HTML."""
    from operations.report import text_tables, write_html

    steps = {"minute": 60, "hour": 3600, "day": 86400}
    if interval not in steps:
        _fail(f"--interval must be one of {', '.join(steps)}, got {interval!r}")
    settings, analytics = _analytics(since, until, tenant, frontier_judge, step_s=steps[interval])
    results = analytics.report()
    typer.echo(text_tables(results))
    path = write_html(results, out or settings.state_dir / "report", analytics.window.describe(),
                      settings.clickhouse.database)
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    app()
