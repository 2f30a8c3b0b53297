"""The embedded ClickHouse store: one process that owns a chDB path and speaks ClickHouse's HTTP interface.

Why: chDB (the ClickHouse engine in process) lets only one process open a data path. The pipeline's writers,
``judgeline migrate`` and analytics queries all need the store at once, so ``judgeline up`` starts this server
over the path and every other process reaches it with the ordinary clickhouse-connect HTTP client, exactly as it
reaches a ClickHouse server in production (``http://127.0.0.1:<port>``).

Contract (the subset of ClickHouse's HTTP interface that clickhouse-connect uses):
- ``GET /ping`` answers ``Ok.``.
- A query comes in the ``query`` URL parameter or the request body; with both, the body is the data of an
  ``INSERT ... FORMAT <fmt>`` (written to a temporary file and ingested with ``FROM INFILE``; chDB's streaming
  insert would save about 1.5 ms of an 8 ms insert, but it acknowledges an insert that a CHECK constraint refuses
  while storing none of it: issue 13, caught by ``tests/judge_engine/online/test_store_isolation.py``).
- ``param_<name>`` URL parameters are server-side query parameters (``{name:Type}``); ``database`` selects the
  current database; other transport settings are accepted and ignored; a body in lz4/zstd/gzip/deflate is
  decompressed whole, every frame of it (clickhouse-connect sends one lz4 frame per block: decoding only the first
  lost the rest of a multi-block insert without an error); an unknown encoding or a truncated frame is an error.
- The answer is the result in the format named by the query's trailing ``FORMAT`` clause (TabSeparated by
  default), uncompressed, with the ``X-ClickHouse-*`` headers the client reads. An error is HTTP 500 with the
  engine's ``Code: N. DB::Exception: ...`` text and ``X-ClickHouse-Exception-Code``.
- Access, as a ClickHouse server behaves on the network: the server's user and password come from its environment
  (``JUDGELINE_STORE_USERNAME``/``JUDGELINE_STORE_PASSWORD``, which ``start`` sets from the settings'
  ``clickhouse.username``/``password``, the same ones clickhouse-connect sends; never on the command line). With a
  password set, every request but ``/ping`` must carry them (HTTP Basic, ``X-ClickHouse-User``/``X-ClickHouse-Key``
  or ``user``/``password`` URL parameters) or gets 401 (code 516, AUTHENTICATION_FAILED); without one (the
  development default, as ClickHouse's ``default`` user) any local process is that user, and DDL works for it.
- A GET is read-only, as in ClickHouse: only SELECT, WITH, SHOW, DESCRIBE, EXISTS and EXPLAIN (else 403, code 164
  READONLY). Table functions and clauses that reach outside the store (file, url, s3, hdfs, remote, mysql,
  postgresql, INFILE/OUTFILE, ...) and SYSTEM statements are refused to every client (403, code 497).
- A request body (compressed or not) is at most ``--max-body-bytes`` (64 MiB), and so is the body decompressed:
  beyond that 413 (code 27).
- A POST to ``/`` with a body is a query (``curl --data-binary 'SELECT 1 FORMAT JSONCompact'``), never the ping.
- chDB runs with ``store_server.xml``: MergeTree parts under 10 MiB use packed storage (one archive file per part;
  issue 13 measured chDB's insert of a batch at 0.6-0.8x the time of the usual dozen files per part). Durability
  is unchanged: a part is committed before the insert's answer either way.
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
_READ_ONLY_RE = re.compile(r"^\s*(\(\s*)*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXISTS|EXPLAIN)\b", re.IGNORECASE)
_OUTSIDE_RE = re.compile(r"\b(file|url|urlCluster|s3|s3Cluster|gcs|azureBlobStorage|hdfs|hdfsCluster|remote|"
                         r"remoteSecure|cluster|clusterAllReplicas|mysql|postgresql|sqlite|odbc|jdbc|mongodb|redis|"
                         r"executable|input|fileCluster|iceberg|deltaLake|hudi)\s*\(|\b(INFILE|OUTFILE)\b|"
                         r"\A\s*SYSTEM\s+\w|\bENGINE\s*=\s*(File|URL|S3|HDFS|MySQL|PostgreSQL|Executable)\b",
                         re.IGNORECASE)
MAX_BODY_BYTES = 64 * 1024 * 1024
_EMBEDDED_INSERT_RE = re.compile(rb"^\s*INSERT\s+INTO\b.*?\bFORMAT\s+\w+[ \t]*\r?\n", re.IGNORECASE | re.DOTALL)
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONFIG = Path(__file__).resolve().with_suffix(".xml")  # chDB's configuration: packed storage for small parts


class Engine:
    """The chDB engine for one path, serialised behind a lock."""

    def __init__(self, path: str):
        import chdb

        Path(path).mkdir(parents=True, exist_ok=True)
        self._conn = chdb.connect(f"{path}?config-file={CONFIG}")
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
                # a temp file and FROM INFILE, not chDB's streaming insert (send_insert): chDB 4.4 answers a streamed
                # insert that a CHECK constraint refuses as written (finish() reports the rows) while storing none
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


def _too_large(limit: int) -> Refused:
    return Refused(413, 27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
                   f"the request body is over the store's limit of {limit} bytes (--max-body-bytes); send smaller "
                   "inserts")


def _decompress(body: bytes, encoding: str | None, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole body, decompressed. clickhouse-connect compresses an insert block by block, each block a frame of
    its own: every frame is decoded (a one-shot ``lz4.frame.decompress`` returns the first frame only and silently
    drops the rest: inserts of more than one block lost rows). A truncated frame or an unknown encoding is an error."""
    if not encoding or encoding == "identity":
        return body
    if encoding in ("gzip", "deflate"):
        import zlib

        parts, rest, size = [], body, 0
        while rest:  # gzip: every member
            d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            parts.append(d.decompress(rest, limit + 1 - size))
            size += len(parts[-1])
            if size > limit or d.unconsumed_tail:
                raise _too_large(limit)
            if not d.eof:
                raise ValueError(f"the {encoding} body is truncated")
            rest = d.unused_data if encoding == "gzip" else b""
        return b"".join(parts)
    if encoding == "lz4":
        import lz4.frame

        parts, rest, size = [], body, 0
        while rest:
            frame = lz4.frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(rest, max_length=limit + 1 - size))
            size += len(parts[-1])
            if size > limit:
                raise _too_large(limit)
            if not frame.eof:
                raise ValueError("the lz4 body ends inside a frame (truncated)")
            rest = frame.unused_data
        return b"".join(parts)
    if encoding == "zstd":
        import io

        import zstandard

        out = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body), read_across_frames=True).read(limit + 1)
        if len(out) > limit:
            raise _too_large(limit)
        return out
    raise ValueError(f"Content-Encoding {encoding!r} is not supported; send lz4, zstd, gzip, deflate or none")


class Refused(Exception):
    """A request the server answers with ``status`` and a ClickHouse error ``code``, without running it."""

    def __init__(self, status: int, code: int, name: str, message: str):
        super().__init__(f"Code: {code}. DB::Exception: {message}. ({name})")
        self.status, self.code = status, code


def _credentials(headers, params: dict[str, str]) -> tuple[str, str]:
    """The user and password a request carries, the ways ClickHouse accepts them ("default", "" when none)."""
    auth = headers.get("Authorization") or ""
    if auth.lower().startswith("basic "):
        import base64

        user, _, password = base64.b64decode(auth[6:].strip()).decode("utf-8", "replace").partition(":")
        return user, password
    user = headers.get("X-ClickHouse-User") or params.get("user") or "default"
    return user, headers.get("X-ClickHouse-Key") or params.get("password") or ""


def check_access(sql: str, method: str) -> None:
    """Refuse what no network client of the store may do, and writes over GET (see the module contract)."""
    if _OUTSIDE_RE.search(sql):
        raise Refused(403, 497, "ACCESS_DENIED", "table functions, INFILE/OUTFILE, engines and SYSTEM statements "
                                                 "that reach outside the store are not allowed")
    if method == "GET" and not _READ_ONLY_RE.match(sql):
        raise Refused(403, 164, "READONLY", "a GET request is read-only; send writes and DDL as POST")


class Handler(BaseHTTPRequestHandler):
    engine: Engine
    protocol_version = "HTTP/1.1"
    user = "default"
    password = ""
    max_body_bytes = MAX_BODY_BYTES
    # the headers and the body go out in two writes: with Nagle's algorithm the body waited for the client's delayed
    # ACK, ~40 ms on every statement (issue 13 measured 47 ms for SELECT 1; the fixed cost of every stored batch)
    disable_nagle_algorithm = True

    def log_message(self, fmt: str, *args: object) -> None:  # keep query text (and parameters) out of the log
        log.debug("%s %s", self.command, self.path.split("?")[0])

    def do_GET(self) -> None:
        self._guarded(lambda: b"")

    def do_POST(self) -> None:
        self._guarded(lambda: _decompress(self._read_body(), self.headers.get("Content-Encoding"),
                                          self.max_body_bytes))

    def _authenticate(self) -> None:
        if not self.password or urlsplit(self.path).path == "/ping":
            return
        import hmac

        user, password = _credentials(self.headers, dict(parse_qsl(urlsplit(self.path).query)))
        if not (hmac.compare_digest(user.encode(), self.user.encode())
                and hmac.compare_digest(password.encode(), self.password.encode())):
            raise Refused(401, 516, "AUTHENTICATION_FAILED", f"{user}: Authentication failed: password is "
                                                              "incorrect, or there is no user with such name")

    def _guarded(self, body: "Callable[[], bytes]") -> None:
        try:
            self._authenticate()
            self._handle(body())
        except Refused as e:
            self.close_connection = True  # an unread body may still be on the socket
            self._reply(e.status, f"{e}\n".encode(), {"X-ClickHouse-Exception-Code": str(e.code)})
        except Exception as e:  # a malformed request gets an answer, never a dropped connection
            self._reply(400, f"Code: 27. DB::Exception: bad request: {e}\n".encode(), {"X-ClickHouse-Exception-Code": "27"})

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, received = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                received += size
                if received > self.max_body_bytes:
                    raise _too_large(self.max_body_bytes)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        return self.rfile.read(length) if length else b""

    def _handle(self, body: bytes) -> None:
        url = urlsplit(self.path)
        if url.path == "/ping" or (url.path == "/" and not body and "query" not in url.query):
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
        check_access(sql, self.command)
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


def serve(path: str, host: str, port: int, max_body_bytes: int = MAX_BODY_BYTES) -> None:
    import os

    if host not in LOOPBACK:
        raise SystemExit(f"the embedded store binds to loopback only, not {host!r}")
    Handler.engine = Engine(path)
    Handler.user = os.environ.get("JUDGELINE_STORE_USERNAME") or "default"
    Handler.password = os.environ.get("JUDGELINE_STORE_PASSWORD") or ""
    Handler.max_body_bytes = max_body_bytes
    if not Handler.password:
        log.warning("no password set (JUDGELINE_CLICKHOUSE__PASSWORD): any local process may read and write the "
                    "store as %r", Handler.user)
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
    parser.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    serve(args.path, args.host, args.port, args.max_body_bytes)


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
    password = settings.clickhouse.password
    env = {"JUDGELINE_STORE_USERNAME": settings.clickhouse.username,
           "JUDGELINE_STORE_PASSWORD": password.get_secret_value() if password is not None else ""}
    return process.start(
        "clickhouse", command, settings.state_dir, env=env, cwd=Path(__file__).resolve().parent.parent,
        ports={"http": port}, extra={"path": path},
    )


def healthy(settings, record) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://{settings.stack.bind_host}:{record.ports['http']}/ping", timeout=2) as r:
        return r.read().startswith(b"Ok.")
