"""Long-running processes: the stream workers and the frontier replay server.

Contract: the commands run in the foreground until SIGTERM; heavy imports stay inside each command.
``frontier-replay`` is the one declaration of the replay server's options (its fault options are generated from
``doubles.faults.Faults``); ``doubles.frontier_replay.start`` runs this command as a process.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import Path
from typing import Optional

import typer

from cli._utils import fail as _fail
from cli._utils import family
from cli._utils import settings as _settings
from doubles.faults import Faults

commands, register = family()


def _with_fault_options(command):
    """One Typer option per field of ``doubles.faults.Faults`` (its type, default and help), passed as ``**faults``."""
    hints = typing.get_type_hints(Faults)
    signature = inspect.signature(command)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    for f in dataclasses.fields(Faults):
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                        default=typer.Option(f.default, help=f.metadata["help"])))
    command.__signature__ = signature.replace(parameters=params)
    command.__annotations__ = {**command.__annotations__, **{f.name: hints[f.name] for f in dataclasses.fields(Faults)}}
    return command


@commands.command("frontier-replay")
@_with_fault_options
def frontier_replay(
    gold: Optional[list[Path]] = typer.Option(
        None, "--gold", help="Gold-format file with recorded verdicts (repeatable; default: ../shared/data/gold/*)."),
    judge: Optional[list[str]] = typer.Option(
        None, "--judge", help="Judge name to serve (repeatable; default: JUDGELINE_FRONTIER__MODEL)."),
    port: Optional[int] = typer.Option(None, help="Port (default: the port of JUDGELINE_FRONTIER__BASE_URL, or 8090)."),
    **faults,
) -> None:
    """Serve recorded teacher verdicts as an OpenAI-compatible frontier judge on 127.0.0.1 (foreground)."""
    from urllib.parse import urlsplit

    from doubles.frontier_replay import DEFAULT_GOLD_DIR, serve

    settings = _settings()
    files = list(gold or sorted(DEFAULT_GOLD_DIR.glob("*.jsonl")))
    if not files:
        _fail(f"no gold files: none in {DEFAULT_GOLD_DIR}; pass --gold FILE")
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        _fail(f"gold file not found: {', '.join(missing)}")
    try:
        injected = Faults(**faults)
    except ValueError as e:
        _fail(str(e))
    port = port or urlsplit(settings.frontier.base_url).port or 8090
    typer.echo(f"frontier replay on http://{settings.stack.bind_host}:{port}/v1 (Ctrl-C stops it)")
    serve(files, settings.stack.bind_host, port, tuple(judge or (settings.frontier.model,)), injected)


worker_app = typer.Typer(no_args_is_help=True, help="Stream workers (Faust), in the foreground until SIGTERM.")


commands.add_typer(worker_app, name="worker")


def _run_worker(role: str, stub_judge_ms: Optional[float] = None, crash_agent_on_key: Optional[str] = None) -> None:
    from streams.worker import main as run_worker

    try:
        run_worker(_settings(), role, stub_judge_ms, crash_agent_on_key)  # type: ignore[arg-type]
    except ValueError as e:
        _fail(str(e))


@worker_app.command("inline")
def worker_inline(
    stub_judge_ms: Optional[float] = typer.Option(
        None, help="Benchmarks only: replace the Triton judge by a constant verdict after this many ms per batch."),
    crash_agent_on_key: Optional[str] = typer.Option(
        None, hidden=True, help="Fault suite only: the agent crashes on the batch holding this key (doubles.faults)."),
) -> None:
    """Traces -> micro-batches -> Triton judge -> ClickHouse; routed traces -> the frontier-requests topic."""
    _run_worker("inline", stub_judge_ms, crash_agent_on_key)


@worker_app.command("frontier")
def worker_frontier() -> None:
    """Frontier requests -> frontier judge (openai client) -> frontier verdicts and disagreements in ClickHouse."""
    _run_worker("frontier")

