"""What every command family shares: the settings, the one-line failure, and the error-to-exit decorator.

Contract:
- ``family()`` gives a command family module its Typer and its ``register(app)`` (``commands, register =
  family()``), which ``cli/main.py`` calls for each module of ``FAMILIES``.
- ``settings()`` is the one ``Settings`` (env prefix ``JUDGELINE_``) resolved against the running embedded stack
  (``stack.services.effective_settings``); invalid settings end the command with one line naming the variable.
- ``fail(message, code=1)`` prints ``error: <message>`` in red on stderr and exits with ``code``.
- ``trained_model(settings, model)``: ``model``, or the last trained judge (``schemas.paths.latest_model_pointer``)
  when it is None; a missing pointer or a directory without ``student.json`` ends the command naming the fix.
- ``exits_on_error(what)`` wraps a command: any exception other than ``typer.Exit``/``KeyboardInterrupt`` becomes
  ``error: <what> failed: <the failure policy's description>`` and exit 1, never a traceback. ``what`` may use the
  command's keyword arguments (``"importing {file}"``) and ``{settings.<group>.<field>}`` of the settings;
  ``hint`` (where to look next) is appended in parentheses.
- ``fails_as(what, hint)`` is the same as a ``with`` block, for one step of a longer command (the demo's phases).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator, TypeVar

import typer

F = TypeVar("F", bound=Callable)


def family() -> tuple[typer.Typer, Callable[[typer.Typer], None]]:
    """A command family's own Typer (its commands are declared on it) and the ``register(app)`` that adds them."""
    commands = typer.Typer()

    def register(app: typer.Typer) -> None:
        app.registered_commands.extend(commands.registered_commands)
        app.registered_groups.extend(commands.registered_groups)

    return commands, register


def settings():
    from pydantic import ValidationError

    from schemas.base import describe_validation_error
    from schemas.settings import Settings
    from stack.services import effective_settings

    try:
        return effective_settings(Settings())
    except ValidationError as e:
        fail(f"invalid settings: {describe_validation_error(e)} (set them with JUDGELINE_* variables)")


def fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def trained_model(settings, model):
    from pathlib import Path

    from schemas.paths import latest_model_pointer

    if model is None:
        pointer = latest_model_pointer(settings.state_dir)
        if not pointer.exists():
            fail("no trained judge yet: run `judgeline train --gold FILE` first, or pass --model DIR")
        model = Path(pointer.read_text().strip())
    if not (Path(model) / "student.json").is_file():
        fail(f"{model} is not a trained judge (no student.json); run `judgeline train` first")
    return Path(model)


def _failed(what: str, exc: BaseException, hint: str, values: dict) -> None:
    from judge_engine.failures import describe

    try:
        subject = what.format(**{"settings": settings(), **values})
    except (KeyError, AttributeError, IndexError, ValueError):
        subject = what
    fail(f"{subject} failed: {describe(exc)}" + (f" ({hint})" if hint else ""))


def exits_on_error(what: str, hint: str = "") -> Callable[[F], F]:
    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def command(*args, **kwargs):
            with fails_as(what, hint, kwargs):
                return fn(*args, **kwargs)

        return command  # type: ignore[return-value]

    return wrap


@contextlib.contextmanager
def fails_as(what: str, hint: str = "", values: dict | None = None) -> Iterator[None]:
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - the one place a command's failure becomes one line
        _failed(what, e, hint, values or {})
