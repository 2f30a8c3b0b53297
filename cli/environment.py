"""Commands of the environment: settings, the embedded stack, migrations, topics, message schemas.

Contract: ``up``/``status``/``migrate`` are thin over ``stack.services`` and ``stack.migrate`` (the demo calls the
same functions); ``config`` prints secrets masked; heavy imports stay inside each command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from cli._utils import exits_on_error, fails_as, family
from cli._utils import fail as _fail
from cli._utils import settings as _settings

commands, register = family()


topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of judgeline.")


schemas_app = typer.Typer(no_args_is_help=True, help="JSON Schema of the message types.")


commands.add_typer(topics_app, name="topics")


commands.add_typer(schemas_app, name="schemas")


@commands.command()
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


@commands.command()
def up(
    only: Optional[list[str]] = typer.Option(None, "--only", help="Start only these services (repeatable)."),
) -> None:
    """Install what is missing and start the embedded stack (broker, ClickHouse store, Triton) on 127.0.0.1."""
    from stack import services as stack
    from stack.process import ServiceError

    settings = _settings()
    try:
        stack.start(settings, only, log=typer.echo)
    except (ServiceError, OSError, ValueError) as e:
        _fail(str(e))
    typer.echo(f"state, PIDs and logs in {settings.state_dir}")


@commands.command()
def down() -> None:
    """Stop the services `judgeline up` started (by recorded PID; nothing else is touched)."""
    from stack import services as stack

    if not stack.down(_settings(), log=typer.echo):
        typer.echo("nothing was running")


@commands.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Report each embedded service: state, PID, address, log. Exits 1 unless all are healthy."""
    from dataclasses import asdict

    from stack import services as stack

    rows = stack.status(_settings())
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        for r in rows:
            typer.secho(r.line(), fg=typer.colors.GREEN if r.state == "healthy" else typer.colors.RED)
    if stack.unhealthy(rows):
        raise typer.Exit(1)


@commands.command()
def migrate() -> None:
    """Apply the ClickHouse migrations (idempotent) to the configured store."""
    from stack.migrate import MigrationDrift, migrate_store
    from streams.clickhouse import describe

    settings = _settings()
    with fails_as(f"migrating {describe(settings)}"):
        try:
            result = migrate_store(settings)
        except MigrationDrift as e:
            _fail(str(e))
    typer.echo(result.summary(f"{describe(settings)}, database {settings.clickhouse.database}"))


@topics_app.command("create")
@exits_on_error("creating topics on Kafka at {settings.kafka.bootstrap_servers}")
def topics_create() -> None:
    """Create every judgeline topic that does not exist yet."""
    from stack.topics import ensure_topics

    created = ensure_topics(_settings())
    typer.echo(f"created: {', '.join(created) or 'none (all exist)'}")


@topics_app.command("list")
@exits_on_error("listing topics on Kafka at {settings.kafka.bootstrap_servers}")
def topics_list() -> None:
    """List topics and their partition counts."""
    from stack.topics import list_topics

    topics = list_topics(_settings())
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


@commands.command()
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

