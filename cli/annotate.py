"""`judgeline annotate`: the annotation queue's web page, and the inter-annotator agreement.

Contract: ``register(app)`` adds the command to the ``judgeline`` app (``cli/main.py``); it reads the one
``Settings`` through ``cli._utils.settings`` and imports its heavy modules inside its body. The page binds to
127.0.0.1 unless ``--host`` says otherwise (it has no login: keep it on a trusted network).
"""

from __future__ import annotations

import typer

from cli._utils import exits_on_error
from cli._utils import fail as _fail
from cli._utils import settings as _settings


def register(app: typer.Typer) -> None:
    app.command("annotate")(annotate)


@exits_on_error("annotating")
def annotate(
    host: str = typer.Option("127.0.0.1", help="Address to serve the page on."),
    port: int = typer.Option(8765, min=1, max=65535, help="Port to serve the page on."),
    agreement: bool = typer.Option(False, "--agreement", help="Print the inter-annotator agreement and exit."),
) -> None:
    """Label routed traces in a browser (disagreements first, then low confidence, then a uniform sample); the
    labels become gold labels that `judgeline calibrate` reads."""
    import json

    from operations.analytics import StoreNotReady, connect_store

    settings = _settings()
    try:
        client = connect_store(settings)
    except StoreNotReady as e:
        _fail(str(e))
    if agreement:
        from operations.annotation import agreement as measure

        typer.echo(json.dumps(measure(client, settings.clickhouse.database), indent=2))
        return
    from operations.annotate_web import serve

    serve(settings, client, host=host, port=port, print_fn=typer.echo)
