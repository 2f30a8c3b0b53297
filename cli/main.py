"""The `judgeline` command line (Typer): the app and the registry of command families.

Contract:
- ``FAMILIES`` lists the modules of ``cli/`` that hold commands, one per family (as vLLM's ``entrypoints/cli``);
  each has ``register(app)``. A family imports its heavy modules inside each command, so ``judgeline --help`` and
  ``judgeline config`` stay fast.
- Every command reads the one ``Settings`` object (env prefix ``JUDGELINE_``) resolved against the running embedded
  stack (``cli._utils.settings``); errors are printed as one clear line and exit non-zero
  (``cli._utils.fail``/``exits_on_error``); secrets are printed masked, never in clear.
"""

from __future__ import annotations

import importlib
import sys

import typer

from cli._utils import settings

FAMILIES = (
    "cli.environment",
    "cli.judge",
    "cli.workers",
    "cli.traffic",
    "cli.analysis",
    "cli.routing",
    "cli.annotate",
    "cli.shadow",
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="judgeline: a streaming LLM-judge service.")


@app.callback()
def _main() -> None:
    import logging

    logging.basicConfig(
        level=settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


for _family in FAMILIES:
    importlib.import_module(_family).register(app)


if __name__ == "__main__":
    app()
