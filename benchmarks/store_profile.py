"""Per-batch profile of the store path: where one inline batch's inserts spend their time (issue 13).

Contract:
- ``python -m benchmarks.store_profile [--rows 425] [--rounds 30] [--baseline-ref main]`` starts its own store
  server(s) over private chDB paths under ``bench-results/.store-profile/`` (stopped at the end), applies the
  migrations, and inserts one inline batch per round: ``--rows`` verdicts and ``--rows`` routed traces (their text
  from the default gold set), through the sink's own code (``streams.sink.ClickHouseStore``), exactly as a worker does.
- Each store server runs instrumented: this module's ``--serve`` mode imports the server module it is given on
  ``PYTHONPATH`` (this worktree's, or ``--baseline-ref``'s copy checked out with ``git archive`` into a temp
  directory, whose ``streams/sink.py`` then writes to it: before and after on both sides) and wraps its body read,
  decompression, ``Engine.run`` and the chDB calls with ``time.perf_counter``; it appends one JSON line per request
  to a log the client reads back (matched by statement). The server code itself carries no timing.
- Per table per batch it reports medians of: ``rows_ms`` (the sink's model-to-columns mapping), ``encode_ms``
  (clickhouse-connect building the Native body, compressed or not, measured by a second, separate build of the
  same block), ``body_kb``, the server's ``read_ms`` (body off the socket, overlapping the client's streaming),
  ``decode_ms`` (decompression), ``stage_ms`` (temp file or statement set-up: ``Engine.run`` less the chDB calls),
  ``chdb_ms`` (chDB parsing the block and writing the part) and ``server_ms`` (the request's whole handling).
  Per batch: ``batch_ms``, the sink's whole ``write_sync`` for both tables (what a worker waits for), the rest of
  it outside mapping, encoding and the server (``http_and_rest_ms``: the loopback HTTP and the client's answer
  handling; medians, so only roughly additive) and the round trip of a trivial statement (``select1_ms``).
- Variants are measured interleaved, round by round (the machine is shared: ratios within one run are what to read):
  ``--variants`` names any of ``lz4`` (the client's default compression), ``none`` (``compress=False``), ``rust``
  and ``rust-none`` (the same with ``native_codec="rust"``, clickhouse-connect-core's compiled encoder), each
  against the worktree's server and, with ``--baseline-ref``, against that ref's server too.
- Prints a table; writes ``bench-results/store_profile.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-results"


# --- the instrumented server (runs in its own process) ---


def serve_instrumented(path: str, port: int, log_path: str) -> None:
    import stack.store_server as srv

    local = threading.local()
    out = open(log_path, "a", buffering=1)

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc = getattr(local, "acc", None)
                if acc is not None:
                    acc[name] = acc.get(name, 0.0) + (time.perf_counter() - t) * 1000
        return wrapper

    class TimedInserter:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            attr = getattr(self._inner, name)
            return timed("chdb_ms", attr) if name in ("append", "finish") else attr

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

    class TimedConn:
        def __init__(self, inner):
            self._inner = inner

        def __getattr__(self, name):
            attr = getattr(self._inner, name)
            if name == "query":
                return timed("chdb_ms", attr)
            if name == "send_insert":
                return lambda *a, **kw: TimedInserter(timed("chdb_ms", attr)(*a, **kw))
            return attr

    engine_init = srv.Engine.__init__

    def init(self, p):
        engine_init(self, p)
        self._conn = TimedConn(self._conn)

    srv.Engine.__init__ = init
    engine_run = timed("engine_ms", srv.Engine.run)

    def run(self, sql, *a, **kw):
        if getattr(local, "acc", None) is not None:
            local.acc["query"] = sql[:60]
        return engine_run(self, sql, *a, **kw)

    srv.Engine.run = run
    srv._decompress = timed("decode_ms", srv._decompress)
    srv.Handler._read_body = timed("read_ms", srv.Handler._read_body)
    guarded = srv.Handler._guarded

    def guarded_timed(self, body):
        local.acc = {}
        t = time.perf_counter()
        try:
            return guarded(self, body)
        finally:
            acc, local.acc = local.acc, None
            acc["server_ms"] = (time.perf_counter() - t) * 1000
            acc.setdefault("query", "")
            out.write(json.dumps(acc) + "\n")

    srv.Handler._guarded = guarded_timed
    srv.serve(path, "127.0.0.1", port)


# --- the client ---


# client options per variant: lz4 is clickhouse-connect's default (compressed inserts, Python Native codec)
VARIANTS = {"lz4": {}, "none": {"compress": False}, "rust": {"native_codec": "rust"},
            "rust-none": {"native_codec": "rust", "compress": False}}


def _start_server(pythonpath: str, path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    from stack.process import free_port

    port = free_port("127.0.0.1")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUDGELINE_")}
    env["PYTHONPATH"] = os.pathsep.join([pythonpath, str(REPO)])
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.store_profile", "--serve", str(path), str(port),
                             str(log_path)], env=env, cwd=pythonpath, stdout=subprocess.DEVNULL,
                            stderr=open(log_path.with_suffix(".stderr"), "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/ping", timeout=1) as r:
                if r.read().startswith(b"Ok."):
                    return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the store server did not start; see {log_path.with_suffix('.stderr')}")
            time.sleep(0.2)


def _batch(n: int):
    from judge_engine.online.pipeline import Rows
    from operations import demo
    from operations.produce import traces_from_gold
    from schemas.settings import Settings
    from schemas.verdict import Verdict

    gold = demo.default_gold(Settings())
    traces = [t for _, t in traces_from_gold(gold) if not isinstance(t, Exception)]
    traces = [traces[i % len(traces)].model_copy(update={"trace_id": f"p{i}"}) for i in range(n)]
    verdicts = [Verdict(**t.row_keys(), label="pass" if t.kind == "pointwise" else "A", score=0.8, confidence=0.6,
                        judge_name="stub", judge_version="0", latency_ms=1.0, route_reason="low_confidence",
                        produced_at=t.timestamp) for t in traces]
    return Rows(verdicts=verdicts, traces=traces)


def _take(run: dict, prefix: str, logs: dict, timeout_s: float = 10.0) -> dict:
    """The first logged request of ``run``'s server whose statement starts with ``prefix`` (read on, waiting, until
    it is there); other lines stay for later."""
    deadline = time.monotonic() + timeout_s
    while True:
        offset, pending = logs[str(run["log"])]
        for i, line in enumerate(pending):
            if line["query"].startswith(prefix):
                return pending.pop(i)
        with open(run["log"]) as f:
            f.seek(offset)
            text = f.read()
        complete = text[: text.rfind("\n") + 1]
        pending.extend(json.loads(line) for line in complete.splitlines() if line.strip())
        logs[str(run["log"])] = (offset + len(complete), pending)
        if not complete:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the store server logged no {prefix!r} request")
            time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=425, help="verdicts and traces per batch")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--variants", default="lz4,none",
                        help=f"client variants, of {', '.join(VARIANTS)} (rust: clickhouse-connect-core's codec, "
                             "not a dependency: pip install it to try)")
    parser.add_argument("--baseline-ref", default=None, help="also profile this git ref's store server (e.g. main)")
    parser.add_argument("--serve", nargs=3, metavar=("PATH", "PORT", "LOG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve_instrumented(args.serve[0], int(args.serve[1]), args.serve[2])

    from schemas.settings import Settings
    from stack.migrate import migrate
    from streams import sink as sink_mod

    work = OUT / ".store-profile"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    servers = {"worktree": str(REPO)}
    sinks = {"worktree": sink_mod}
    tmp = None
    if args.baseline_ref:
        tmp = tempfile.mkdtemp(prefix="store-profile-")
        archive = subprocess.run(["git", "archive", args.baseline_ref, "stack", "schemas", "streams/sink.py"],
                                 cwd=REPO, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        servers = {args.baseline_ref: tmp, **servers}
        spec = importlib.util.spec_from_file_location("baseline_sink", Path(tmp) / "streams" / "sink.py")
        sinks[args.baseline_ref] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sinks[args.baseline_ref])
    batch = _batch(args.rows)
    procs, runs = [], []
    try:
        for name, pythonpath in servers.items():
            log_path = work / f"{name.replace('/', '_')}.jsonl"
            log_path.touch()
            proc, url = _start_server(pythonpath, work / f"{name.replace('/', '_')}-chdb", log_path)
            procs.append(proc)
            for variant in args.variants.split(","):
                database = f"p_{variant.replace('-', '_')}"
                settings = Settings(clickhouse={"dsn": url, "database": database})
                store = sinks[name].ClickHouseStore(settings)
                kwargs = VARIANTS[variant]
                from streams.clickhouse import connect

                store._client = connect(settings, **kwargs)
                migrate(store._client, database)
                runs.append({"server": name, "variant": variant, "store": store, "sink": sinks[name], "log": log_path,
                             "database": database, "samples": []})
        offsets = {str(r["log"]): (r["log"].stat().st_size, []) for r in runs}
        for rnd in range(args.warmup + args.rounds):
            for run in runs:
                store, client = run["store"], run["store"]._client
                sample: dict = {}
                for table, messages in batch.tables().items():
                    if not messages:
                        continue
                    t = time.perf_counter()
                    data = run["sink"].columns(table, messages)
                    sample[f"{table}.rows_ms"] = (time.perf_counter() - t) * 1000
                    context = store._insert_context(client, table)
                    context.data = data
                    if context.compression is None:
                        context.compression = client.write_compression
                    t = time.perf_counter()
                    body = b"".join(bytes(b) for b in client._transform.build_insert(context))
                    sample[f"{table}.encode_ms"] = (time.perf_counter() - t) * 1000
                    sample[f"{table}.body_kb"] = len(body) / 1024
                    context.data = None
                    context.current_row = context.current_block = 0
                t = time.perf_counter()
                client.command("SELECT 1")  # the fixed cost of any statement's round trip
                sample["select1_ms"] = (time.perf_counter() - t) * 1000
                # what a worker waits for: the sink's whole write (both tables, its own mapping and encoding)
                t = time.perf_counter()
                store.write_sync(batch)
                sample["batch_ms"] = (time.perf_counter() - t) * 1000
                # the server logs a request after answering it: wait for this batch's lines, matched by statement
                for table in [t for t, m in batch.tables().items() if m]:
                    database = run["database"]
                    line = _take(run, f"INSERT INTO {database}.{table} ", offsets)
                    for key in ("read_ms", "decode_ms", "engine_ms", "chdb_ms", "server_ms"):
                        sample[f"{table}.{key}"] = line.get(key, 0.0)
                    sample[f"{table}.stage_ms"] = line.get("engine_ms", 0.0) - line.get("chdb_ms", 0.0)
                if rnd >= args.warmup:
                    run["samples"].append(sample)
    finally:
        for run in runs:
            run["store"].close()
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def median(samples, key):
        values = [s[key] for s in samples if key in s]
        return round(statistics.median(values), 2) if values else None

    load = os.getloadavg()
    result = {"rows": args.rows, "rounds": args.rounds, "load_avg_1m": round(load[0], 2), "cpus": os.cpu_count(),
              "runs": []}
    keys = ("rows_ms", "encode_ms", "body_kb", "read_ms", "decode_ms", "stage_ms", "chdb_ms", "server_ms")
    print(f"\nstore path per batch ({args.rows} verdicts + {args.rows} traces), medians of {args.rounds} interleaved "
          f"rounds, 1-min load {load[0]:.1f} on {os.cpu_count()} CPUs\n")
    header = f"{'server':>10} {'compress':>8} {'table':>9} " + " ".join(f"{k:>10}" for k in keys) + \
             f" {'http_ms':>9} {'batch_ms':>9}"
    print(header)
    for run in runs:
        row = {"server": run["server"], "variant": run["variant"], "batch_ms": median(run["samples"], "batch_ms"),
               "select1_ms": median(run["samples"], "select1_ms"), "tables": {}}
        for table in ("verdicts", "traces"):
            figures = {k: median(run["samples"], f"{table}.{k}") for k in keys}
            row["tables"][table] = figures
            print(f"{run['server']:>10} {run['variant']:>8} {table:>9} " +
                  " ".join(f"{(figures[k] if figures[k] is not None else float('nan')):>10.2f}" for k in keys) +
                  f" {'':>9} {row['batch_ms'] if table == 'traces' else '':>9}")
        # the round trip's share: the whole batch less what is accounted for on both sides
        accounted = sum((row["tables"][t][k] or 0) for t in ("verdicts", "traces")
                        for k in ("rows_ms", "encode_ms", "server_ms"))
        row["http_and_rest_ms"] = round(row["batch_ms"] - accounted, 2)
        print(f"{'':>10} {'':>8} {'both':>9} " + " ".join(f"{'':>10}" for _ in keys) +
              f" {row['http_and_rest_ms']:>9.2f} {row['batch_ms']:>9.2f}   (round trip of a trivial statement: "
              f"{row['select1_ms']} ms)")
        result["runs"].append(row)
    OUT.mkdir(exist_ok=True)
    (OUT / "store_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {OUT / 'store_profile.json'}")


if __name__ == "__main__":
    main()
