"""`judgeline shadow start|status|stop|promote`: a candidate judge version scoring live traffic apart (shadow mode).

Contract: thin over ``operations.shadow`` (the life cycle) and ``operations.gate`` (the decision recorded at start and
enforced at promotion); heavy imports stay inside each command. The inline workers score with the candidate when
``JUDGELINE_SHADOW__VERSION`` is ``latest`` (or the version number); ``judgeline report`` compares the two.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli._utils import fail as _fail
from cli._utils import fails_as, family, trained_model
from cli._utils import settings as _settings

commands, register = family()
shadow_app = typer.Typer(no_args_is_help=True, help="Shadow mode: a candidate judge version scores live traffic "
                                                    "apart before promotion (docs/judge.md).")
commands.add_typer(shadow_app, name="shadow")


def _store(settings, required: bool):
    from operations.analytics import StoreNotReady, connect_store

    try:
        return connect_store(settings)
    except StoreNotReady as e:
        if required:
            _fail(f"the deployment gate needs the gold labels in ClickHouse: {e} (or pass --force)")
        typer.echo(f"gate: not assessed and nothing recorded ({e})", err=True)
        return None


@shadow_app.command("start")
def start(
    model: Optional[Path] = typer.Option(None, help="Trained model directory (default: the last `judgeline train`)."),
    load: bool = typer.Option(True, "--load/--no-load", help="Load it into the running Triton."),
) -> None:
    """Serve a trained judge as the shadow candidate, beside the live version (which is untouched); the gate's
    figures are recorded (action shadow) but do not stop it."""
    from operations.shadow import ShadowError
    from operations.shadow import start as run_start

    settings = _settings()
    model = trained_model(settings, model)
    client = _store(settings, required=False)
    with fails_as(f"starting shadow mode with {model}", "is Triton running? `judgeline status`"):
        try:
            started = run_start(settings, model, client, load=load, log=typer.echo)
        except (ShadowError, FileNotFoundError, FileExistsError) as e:
            _fail(str(e))
    if started.decision is not None:
        typer.echo(started.decision.summary())
        if not started.decision.allowed:
            typer.echo("  shadowing it regardless: the gate applies at promotion (`judgeline shadow promote`)")
    where = (f"Triton serves {settings.shadow_model_name} version {started.served}" if started.served else
             f"{settings.shadow_model_name} version {started.version} is exported (not loaded)")
    typer.echo(f"{where}, beside the live {settings.triton.model_name}. The inline workers score with it when "
               f"JUDGELINE_SHADOW__VERSION=latest (or {started.version}); compare with `judgeline report`.")


@shadow_app.command("status")
def status() -> None:
    """The candidate in shadow (if any), the live versions, and whether the workers' settings shadow."""
    from judge_engine.training.export import versions
    from operations.shadow import candidates
    from stack.triton import model_repository

    settings = _settings()
    live = versions(model_repository(settings) / settings.triton.model_name)
    shadowed = candidates(settings)
    typer.echo(f"live model {settings.triton.model_name}: versions {live or 'none'} (the newest is served)")
    typer.echo(f"shadow model {settings.shadow_model_name}: "
               + (f"candidate version {shadowed[-1]}" if shadowed else "no candidate"))
    typer.echo("these settings: " + (f"shadow mode on (JUDGELINE_SHADOW__VERSION={settings.shadow.version})"
                                      if settings.shadow.enabled else "shadow mode off (JUDGELINE_SHADOW__VERSION "
                                                                      "is empty)"))


@shadow_app.command("stop")
def stop(
    unload: bool = typer.Option(True, "--unload/--no-unload", help="Unload it from the running Triton."),
) -> None:
    """Stop shadowing: unload the candidate and retire its exported version (moved under retired/)."""
    from operations.shadow import stop as run_stop

    settings = _settings()
    with fails_as(f"unloading {settings.shadow_model_name} from Triton at {settings.triton.http_url}"):
        removed = run_stop(settings, unload=unload)
    typer.echo(f"shadow stopped; retired version(s) {removed or 'none'} of {settings.shadow_model_name}. Workers "
               "still set to shadow count each batch as not_loaded until JUDGELINE_SHADOW__VERSION is emptied.")


@shadow_app.command("promote")
def promote(
    force: bool = typer.Option(False, help="Promote even if the deployment gate refuses it (recorded as forced)."),
    load: bool = typer.Option(True, "--load/--no-load", help="Load it into the running Triton."),
) -> None:
    """Make the shadow candidate the live version (same number), through the deployment gate, and stop the shadow."""
    from operations.shadow import PromotionRefused, ShadowError
    from operations.shadow import promote as run_promote

    settings = _settings()
    client = _store(settings, required=not force)
    with fails_as(f"promoting the shadow candidate on Triton at {settings.triton.http_url}"):
        try:
            version = run_promote(settings, client, force=force, load=load, log=typer.echo)
        except (PromotionRefused, ShadowError) as e:
            _fail(str(e))
    typer.echo(f"{settings.triton.model_name} version {version} is live" + ("" if load else " (exported, not loaded)"))
