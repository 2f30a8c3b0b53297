"""The `judgeline` command line (Typer). Each subcommand imports its heavy modules lazily, so `judgeline --help`
and `judgeline config` stay fast.

Contract: every command reads the one ``Settings`` object (env prefix ``JUDGELINE_``), resolved against the
running embedded stack (``infra.stack.effective_settings``); errors are printed as one clear line and exit
non-zero; secrets are printed masked, never in clear.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

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

    from infra.stack import effective_settings
    from schemas.base import describe_validation_error
    from schemas.settings import Settings

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
    from infra import stack
    from infra.process import ServiceError

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
    from infra import stack

    if not stack.down(_settings(), log=typer.echo):
        typer.echo("nothing was running")


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Report each embedded service: state, PID, address, log. Exits 1 unless all are healthy."""
    from dataclasses import asdict

    from infra import stack

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
    from infra.clickhouse import connect, describe
    from infra.migrate import MigrationDrift, migrate as run

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
    from infra.topics import ensure_topics

    settings = _settings()
    try:
        created = ensure_topics(settings)
    except Exception as e:
        _fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {e}")
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@topics_app.command("list")
def topics_list() -> None:
    """List topics and their partition counts."""
    from infra.topics import list_topics

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


@app.command()
def demo(
    gold_dir: Path = typer.Option(
        Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gold",
        help="Directory of gold-format files to check (default: ../shared/data/gold beside the checkout).",
    ),
) -> None:
    """What runs today: start the stack, show its health, apply migrations, read the gold sets."""
    import collections

    from schemas.gold import GoldLabel, read_gold_file

    typer.secho("1. the embedded stack", bold=True)
    up(only=None)
    typer.secho("2. health", bold=True)
    try:
        status(as_json=False)
    except typer.Exit as e:
        if e.exit_code:
            _fail("a service is not healthy; see its log above")
    typer.secho("3. ClickHouse migrations", bold=True)
    migrate()
    typer.secho("4. topics", bold=True)
    topics_list()
    typer.secho(f"5. gold sets in {gold_dir}", bold=True)
    files = sorted(gold_dir.glob("*.jsonl")) if gold_dir.is_dir() else []
    if not files:
        typer.echo("   none found (pass --gold-dir)")
    for path in files:
        counts: collections.Counter = collections.Counter()
        for _, item in read_gold_file(path):
            counts[item.kind if isinstance(item, GoldLabel) else "invalid"] += 1
        typer.echo(f"   {path.name}: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    typer.secho(
        "not yet: the streaming pipeline (traces -> Triton judge -> frontier -> ClickHouse) arrives with the judge "
        "and streaming issues; this demo shows the platform they run on. Stop the stack with `make down`.",
        fg=typer.colors.YELLOW,
    )


if __name__ == "__main__":
    app()
