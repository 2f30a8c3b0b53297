"""The embedded ClickHouse store: one process that owns a chDB path and speaks ClickHouse's HTTP interface.

Why: chDB (the ClickHouse engine in process) lets only one process open a data path. The pipeline's writers,
``judgeline migrate`` and analytics queries all need the store at once, so ``judgeline up`` starts this server
over the path and every other process reaches it with the ordinary clickhouse-connect HTTP client, exactly as it
reaches a ClickHouse server in production (``http://127.0.0.1:<port>``).

Contract (the subset of ClickHouse's HTTP interface that clickhouse-connect uses):
- ``GET /ping`` answers ``Ok.``.
- A query comes in the ``query`` URL parameter or the request body; with both, the body is the data of an
  ``INSERT ... FORMAT <fmt>`` (written to a temporary file and ingested with ``FROM INFILE``).
- ``param_<name>`` URL parameters are server-side query parameters (``{name:Type}``); ``database`` selects the
  current database; other transport settings are accepted and ignored; a body in lz4/zstd/gzip/deflate is
  decompressed whole, every frame of it (clickhouse-connect sends one lz4 frame per block: decoding only the first
  lost the rest of a multi-block insert without an error); an unknown encoding or a truncated frame is an error.
- The answer is the result in the format named by the query's trailing ``FORMAT`` clause (TabSeparated by
  default), uncompressed, with the ``X-ClickHouse-*`` headers the client reads. An error is HTTP 500 with the
  engine's ``Code: N. DB::Exception: ...`` text and ``X-ClickHouse-Exception-Code``.
- Binds to a loopback address only. Statements run one at a time (the engine handle is not shared between
  threads); this is a development and test store, not a production server.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qsl, urlsplit

from stack import process

log = logging.getLogger("judgeline.store")

_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_INSERT_RE = re.compile(r"^\s*INSERT\s+INTO\b", re.IGNORECASE)
_CODE_RE = re.compile(r"Code:\s*(\d+)")
_EMBEDDED_INSERT_RE = re.compile(rb"^\s*INSERT\s+INTO\b.*?\bFORMAT\s+\w+[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Engine:
    """The chDB engine for one path, serialised behind a lock."""

    def __init__(self, path: str):
        import chdb

        Path(path).mkdir(parents=True, exist_ok=True)
        self._conn = chdb.connect(path)
        self._lock = threading.Lock()
        self._database: str | None = None

    def run(self, sql: str, params: dict[str, str], database: str | None, data: bytes | None) -> tuple[bytes, str, int]:
        """Execute one statement; returns (result bytes, result format, rows written)."""
        match = _FORMAT_RE.search(sql)
        fmt = match.group(1) if match else "TabSeparated"
        with self._lock:
            self._use(database)
            if data is not None:
                if not (_INSERT_RE.match(sql) and match):
                    raise ValueError("Code: 62. DB::Exception: data in the body needs an INSERT ... FORMAT query")
                with tempfile.NamedTemporaryFile(suffix="." + fmt.lower()) as f:
                    f.write(data)
                    f.flush()
                    quoted = f.name.replace("\\", "\\\\").replace("'", "\\'")
                    sql = sql[: match.start()] + f" FROM INFILE '{quoted}' FORMAT {fmt}"
                    result = self._conn.query(sql, fmt, params=params)
            else:
                result = self._conn.query(sql, fmt, params=params) if params else self._conn.query(sql, fmt)
            return bytes(result.bytes()), fmt, int(result.rows_written() or 0)

    def _use(self, database: str | None) -> None:
        if database and database != self._database:
            self._conn.query(f"USE `{database.replace('`', '')}`")
            self._database = database


def _decompress(body: bytes, encoding: str | None) -> bytes:
    """The whole body, decompressed. clickhouse-connect compresses an insert block by block, each block a frame of
    its own: every frame is decoded (a one-shot ``lz4.frame.decompress`` returns the first frame only and silently
    drops the rest: inserts of more than one block lost rows). A truncated frame or an unknown encoding is an error."""
    if not encoding or encoding == "identity":
        return body
    if encoding == "gzip":
        import gzip

        return gzip.decompress(body)  # every member
    if encoding == "deflate":
        import zlib

        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        parts, rest = [], body
        while rest:
            frame = lz4.frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(rest))
            if not frame.eof:
                raise ValueError("the lz4 body ends inside a frame (truncated)")
            rest = frame.unused_data
        return b"".join(parts)
    if encoding == "zstd":
        import io

        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True).read()
    raise ValueError(f"Content-Encoding {encoding!r} is not supported; send lz4, zstd, gzip, deflate or none")


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"
    # the headers and the body go out in two writes: with Nagle's algorithm the body waited for the client's delayed
    # ACK, ~40 ms on every statement (issue 13 measured 47 ms for SELECT 1; the fixed cost of every stored batch)
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: object) -> None:  # keep query text (and parameters) out of the log
        log.debug("%s %s", self.command, self.path.split("?")[0])

    def do_GET(self) -> None:
        self._guarded(lambda: b"")

    def do_POST(self) -> None:
        self._guarded(lambda: _decompress(self._read_body(), self.headers.get("Content-Encoding")))

    def _guarded(self, body: "Callable[[], bytes]") -> None:
        try:
            self._handle(body())
        except Exception as e:  # a malformed request gets an answer, never a dropped connection
            self._reply(400, f"Code: 27. DB::Exception: bad request: {e}\n".encode(), {"X-ClickHouse-Exception-Code": "27"})

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/"):
            if "query" not in url.query:
                return self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        sql = params.pop("query", None)
        data: bytes | None = None
        if sql is None:  # the statement is the body, or leads it (INSERT ... FORMAT fmt\n<data>)
            embedded = _EMBEDDED_INSERT_RE.match(body)
            sql, body = (body[: embedded.end()], body[embedded.end() :]) if embedded else (body, b"")
            sql = sql.decode("utf-8", errors="replace").strip()
        if body:
            data = body
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            out, fmt, written = self.engine.run(sql, query_params, params.get("database"), data)
        except Exception as e:  # the engine's message goes back to the client, as ClickHouse does
            message = str(e)
            code = _CODE_RE.search(message)
            return self._reply(
                500,
                (message.strip() + "\n").encode(),
                {"X-ClickHouse-Exception-Code": code.group(1) if code else "1000", "X-ClickHouse-Query-Id": query_id},
            )
        summary = {"read_rows": "0", "read_bytes": "0", "written_rows": str(written), "written_bytes": "0"}
        self._reply(
            200,
            out,
            {
                "Content-Type": "application/octet-stream" if fmt in ("Native", "RowBinary") else "text/plain",
                "X-ClickHouse-Format": fmt,
                "X-ClickHouse-Timezone": "UTC",
                "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Summary": json.dumps(summary),
            },
        )

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("X-ClickHouse-Server-Display-Name", "judgeline-embedded-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(path: str, host: str, port: int) -> None:
    if host not in LOOPBACK:
        raise SystemExit(f"the embedded store binds to loopback only, not {host!r}")
    Handler.engine = Engine(path)
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log.info("embedded ClickHouse store on http://%s:%d over %s", host, port, path)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.path, args.host, args.port)


if __name__ == "__main__":
    main()


# --- how `judgeline up` runs this server (see stack/services.py) ---


def start(settings) -> process.ServiceRecord:
    """Start this server over the embedded chDB path of ``settings`` (``chdb://`` DSNs only)."""
    dsn = settings.clickhouse_dsn
    if not dsn.startswith("chdb://") or dsn == "chdb://memory":
        raise ValueError(f"the embedded store needs a chdb:///path DSN, not {dsn!r}")
    path = str(Path(dsn[len("chdb://") :]).resolve())
    host = settings.stack.bind_host
    port = settings.stack.store_port or process.free_port(host)
    command = [sys.executable, "-m", "stack.store_server", "--path", path, "--host", host, "--port", str(port)]
    return process.start(
        "clickhouse", command, settings.state_dir, cwd=Path(__file__).resolve().parent.parent,
        ports={"http": port}, extra={"path": path},
    )


def healthy(settings, record) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://{settings.stack.bind_host}:{record.ports['http']}/ping", timeout=2) as r:
        return r.read().startswith(b"Ok.")
