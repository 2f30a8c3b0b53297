"""`judgeline annotate`: the annotation queue as a web page (aiohttp.web), bound to 127.0.0.1 by default.

Contract:
- ``make_app(settings, client)`` (a clickhouse-connect client on the store) returns the ``aiohttp.web.Application``: ``GET /`` the page (``annotate.html``, no external
  assets: it works offline); ``GET /api/next?annotator=&policy=&tenant=&app=&criterion=`` the next trace of the
  queue (``operations.annotation.next_items``) as the page shows it, without its verdicts, or ``{"item": null}``
  when the queue is empty; ``POST /api/label`` ``{annotator, trace_id, criterion, label, note}`` records the gold
  label (``record_label``) and only then answers with the verdicts (the inline and frontier labels the person did
  not see while deciding); ``GET /api/agreement`` the inter-annotator agreement. A bad request (no annotator name,
  a label that does not fit the kind, an unknown trace or policy) is a 400 whose ``error`` names the field.
- ClickHouse calls run in a thread (the client is synchronous), one at a time on the app's one client.
- The page: the annotator's name (kept in the browser's localStorage), the policy and filters, the question, the
  answer (or answers A and B side by side), the reference and context when present; buttons and keyboard shortcuts:
  pointwise ``p`` pass / ``f`` fail, pairwise ``a`` / ``b`` / ``t`` tie; ``n`` focuses the note, ``Enter`` or
  ``→`` goes to the next trace once the verdicts are shown.
- ``serve(settings, client, host, port)`` runs it until interrupted.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web

from operations import annotation
from schemas.settings import Settings

PAGE = Path(__file__).with_name("annotate.html")


class _Bad(Exception):
    pass


def make_app(settings: Settings, client) -> web.Application:
    from streams.sink import ClickHouseStore

    database = settings.clickhouse.database
    store = ClickHouseStore(settings, client=client)  # inserts through the same client
    lock = threading.Lock()  # one statement at a time on the client (its HTTP session)

    def locked(fn, *args, **kwargs):
        def run():
            with lock:
                return fn(*args, **kwargs)

        return asyncio.to_thread(run)

    def query(fn, *args, **kwargs):
        return locked(fn, client, database, *args, **kwargs)

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.read_text(), content_type="text/html")

    async def next_item(request: web.Request) -> web.Response:
        q = request.query
        items = await query(annotation.next_items, q.get("annotator", ""), q.get("policy") or "mixed",
                            tenant=q.get("tenant", ""), app=q.get("app", ""), criterion=q.get("criterion", ""))
        return web.json_response({"item": items[0].shown() if items else None})

    async def label(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise _Bad("(body): send JSON {annotator, trace_id, criterion, label, note}") from None
        item = await query(annotation.find_item, str(body.get("trace_id") or ""), str(body.get("criterion") or ""))
        if item is None:
            raise _Bad("trace_id: no stored trace with this id and criterion; reload the queue")
        await locked(annotation.record_label, store, item, str(body.get("annotator") or ""),
                     str(body.get("label") or ""), str(body.get("note") or ""))
        return web.json_response({"recorded": True, "verdicts": item.reveal})

    async def agreement(request: web.Request) -> web.Response:
        return web.json_response(await query(annotation.agreement))

    @web.middleware
    async def errors(request: web.Request, handler):
        try:
            return await handler(request)
        except (_Bad, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)

    app = web.Application(middlewares=[errors])
    app.add_routes([web.get("/", page), web.get("/api/next", next_item), web.post("/api/label", label),
                    web.get("/api/agreement", agreement)])
    app.on_cleanup.append(lambda _app: locked(client.close))
    return app


def serve(settings: Settings, client, host: str = "127.0.0.1", port: int = 8765, print_fn=print) -> None:
    print_fn(f"judgeline annotate: http://{host}:{port}/ (Ctrl-C stops it)")
    web.run_app(make_app(settings, client), host=host, port=port, print=None)
