"""Commands over what is stored: gold import, calibrate, report.

Contract: the commands read ClickHouse through ``operations.analytics.connect_store`` (a missing or unmigrated
store is one clear line); ``gold import`` never stops at a bad line; heavy imports stay inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli._utils import exits_on_error, family
from cli._utils import fail as _fail
from cli._utils import settings as _settings

commands, register = family()


gold_app = typer.Typer(no_args_is_help=True, help="The human-labelled gold set in ClickHouse.")


commands.add_typer(gold_app, name="gold")


@gold_app.command("import")
@exits_on_error("importing {file}")
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
    result = import_gold(ClickHouseStore(settings, client=client), client, settings.clickhouse.database, file, source)
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
                               judge=frontier_judge or settings.frontier.model,
                               **{"threshold": settings.routing.threshold, **options})


@commands.command()
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


@commands.command()
def report(
    since: Optional[str] = typer.Option(None, help="Only traces at or after this time (ISO; UTC unless stated)."),
    until: Optional[str] = typer.Option(None, help="Only traces before this time (ISO)."),
    tenant: Optional[str] = typer.Option(None, help="Only this tenant (default: all)."),
    out: Optional[Path] = typer.Option(None, help="Directory for report.html (default: <state dir>/report)."),
    interval: str = typer.Option("hour", help="Period of the time series: minute, hour or day."),
    frontier_judge: Optional[str] = typer.Option(None, help="Frontier judge name (default: JUDGELINE_FRONTIER__MODEL)."),
) -> None:
    """Analytics from ClickHouse: verdict/fail rates, routing and spend, disagreement and drift, latency, shadow
    candidates beside the live judge; HTML."""
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

