"""Hostile traffic through the real pipeline, and secrets that must not leak from it.

One run on the session stack (Tansu broker, chDB store server, Triton with the tiny judge), with real
`judgeline worker inline` and `worker frontier` processes and the replay frontier behind a hostile provider: the
whole corpus of ``tests/hostile_corpus.py`` is produced, every valid trace is routed to the frontier, and the run's
settings carry a known fake API key, SASL password and ClickHouse password. The provider in front of the replay
server answers 401 and 500 for some traces with the ``Authorization`` header echoed in the error body (the worst
case: a provider quoting the key back). The tests then check what the run left behind:

- every hostile message has exactly one dead letter with its reason and its bytes, or exactly one verdict; the
  workers are still alive and judge a valid trace sent after the corpus; the tables are all there; the strings
  stored round-trip byte for byte (NUL, quotes, SQL, control characters: the writes are parameterised);
- injected instructions and forged section markers do not change what the frontier judged;
- none of the secrets (nor their base64, nor the ``Bearer`` form) appears in any worker, stack or replay log, any
  file under the state directory, any message of any topic on the broker (read from the beginning), any row of any
  table of the run's database, any error, the workers' command lines or this process's logs;
- every socket the workers and the replay server listen on is bound to the loopback address.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fault_support import FaultRun
from hostile_corpus import Case, corpus, injection_gold
from pydantic import SecretStr
from tests_support import LOOPBACK_HEX, listening_addresses, serve_tiny_judge

from doubles.frontier_replay import Faults
from judge_engine.online.pipeline import DEAD_LETTER_RAW_BYTES
from operations.produce import produce
from schemas.ddl import MIGRATIONS
from stack import process
from stack.workers import start_worker, wait_until, wait_worker_ready
from streams.clickhouse import connect

pytestmark = pytest.mark.integration

TRACE_HEADER = "X-Judgeline-Trace-Id"


class HostileProvider(BaseHTTPRequestHandler):
    """Forwards chat completions to the replay server, except traces whose id contains 'authfail' (401) or 'boom'
    (500): those get an error whose message quotes the Authorization header. Records every Authorization seen."""

    protocol_version = "HTTP/1.1"
    upstream = ""
    seen_auth: set = set()

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        type(self).seen_auth.add(auth)
        trace_id = self.headers.get(TRACE_HEADER, "")
        if "authfail" in trace_id or "boom" in trace_id:
            status = 401 if "authfail" in trace_id else 500
            payload = json.dumps({"error": {"message": f"Incorrect API key provided: {auth}; request headers: "
                                                       f"{dict(self.headers)}", "type": "invalid_request_error",
                                            "code": "invalid_api_key" if status == 401 else "server_error"}}).encode()
            return self._reply(status, payload)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization",
                                                                          TRACE_HEADER.lower())}
        request = urllib.request.Request(self.upstream + self.path.removeprefix("/v1"), data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                self._reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            self._reply(e.code, e.read())

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class HostileRun:
    run: FaultRun
    prefix: str
    cases: list[Case]
    secrets: dict[str, str]
    workers: list[process.ServiceRecord] = field(default_factory=list)
    after_id: str = ""
    seen_auth: set = field(default_factory=set)
    test_log: str = ""

    def rows(self, sql: str) -> list[tuple]:
        return self.run.rows(sql)


def _valid(trace_id: str) -> bytes:
    return json.dumps({"trace_id": trace_id, "kind": "pointwise", "question": "Is the sky blue?",
                       "answer": "Yes."}).encode()


@pytest.fixture(scope="module")
def hostile(stack, tiny_judge, tmp_path_factory):
    serve_tiny_judge(stack, tiny_judge)
    tag = uuid.uuid4().hex
    secrets = {"api_key": f"sk-test-{tag}", "sasl": f"sasl-pw-{tag[:16]}", "clickhouse": f"ch-pw-{tag[16:]}"}
    run = FaultRun.create(
        stack,
        kafka={"sasl_username": "judgeline", "sasl_password": SecretStr(secrets["sasl"])},
        clickhouse={"password": SecretStr(secrets["clickhouse"])},
        routing={"threshold": 1.0, "calibration_sample_rate": 1.0},  # every verdict goes to the frontier too
        frontier={"api_key": SecretStr(secrets["api_key"]), "max_retries": 1},
        stream={"batch_size": 16},
    )
    prefix = f"hc{tag[:6]}-"
    cases = corpus(prefix)
    gold = tmp_path_factory.mktemp("hostile") / "injection-gold.jsonl"
    gold.write_text("".join(json.dumps(item) + "\n" for item in injection_gold(prefix)))
    log_capture = logging.StreamHandler(stream := _Buffer())
    log_capture.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(log_capture)
    root.setLevel(logging.DEBUG)
    server = None
    try:
        replayed = run.replay(gold, faults=Faults())
        HostileProvider.upstream = replayed.frontier.base_url.removesuffix("/v1") + "/v1"
        HostileProvider.seen_auth = set()
        server = ThreadingHTTPServer(("127.0.0.1", 0), HostileProvider)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        settings = replayed.model_copy(update={"frontier": replayed.frontier.model_copy(
            update={"base_url": f"http://127.0.0.1:{server.server_address[1]}/v1"})})
        run.settings = settings
        workers = [start_worker(settings, "inline", name=f"hostile-inline-{tag[:6]}"),
                   start_worker(settings, "frontier", name=f"hostile-frontier-{tag[:6]}",
                                env={"JUDGELINE_LOG_LEVEL": "DEBUG"})]  # the most a log could say
        run.processes.extend(workers)
        for w in workers:
            wait_worker_ready(settings, w, timeout_s=120)

        extra = [(f"{prefix}authfail".encode(), _valid(f"{prefix}authfail")),
                 (f"{prefix}boom".encode(), _valid(f"{prefix}boom"))]
        messages = [(f"{prefix}{c.name}".encode(), c.raw) for c in cases] + extra
        sent = produce(settings, messages, timeout_s=60)
        assert (sent.sent, sent.failed) == (len(messages), 0), sent.first_error
        n_verdicts = sum(c.expect == "verdict" for c in cases) + len(extra)
        run.wait_accounted(len(messages), timeout_s=180)
        assert wait_until(lambda: run.count("SELECT count() FROM {db}.frontier_verdicts FINAL") >= n_verdicts, 120)

        after = f"{prefix}after-the-corpus"  # the workers still judge, after all of that
        assert produce(settings, [(after.encode(), _valid(after))]).sent == 1
        assert wait_until(lambda: run.count(
            f"SELECT count() FROM {{db}}.frontier_verdicts FINAL WHERE trace_id = '{after}'") == 1, 120)
        time.sleep(1.5)  # anything extra (a duplicate, a stray message) would land now
        yield HostileRun(run, prefix, cases, secrets, workers, after, set(HostileProvider.seen_auth), stream.text())
    finally:
        root.removeHandler(log_capture)
        root.setLevel(old_level)
        if server is not None:
            server.shutdown()
            server.server_close()
        run.stop()


class _Buffer:
    def __init__(self):
        self.parts: list[str] = []

    def write(self, s: str) -> None:
        self.parts.append(s)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(self.parts)


def test_every_hostile_message_gets_one_dead_letter_with_its_reason_or_one_verdict(hostile):
    letters = {k: (stage, error, bytes.fromhex(raw)) for k, stage, error, raw, n in hostile.rows(
        "SELECT key, any(stage), any(error), hex(any(raw)), count() FROM {db}.dead_letters FINAL GROUP BY key")
        if n == 1}
    verdicts = {t: n for t, n in hostile.rows("SELECT trace_id, count() FROM {db}.verdicts FINAL GROUP BY trace_id")}
    for case in hostile.cases:
        key = f"{hostile.prefix}{case.name}"
        if case.expect == "dead_letter":
            assert key in letters, f"{case.name}: no dead letter"
            stage, error, raw = letters[key]
            assert stage == "parse" and all(r in error for r in case.reason), (case.name, error)
            assert raw == (case.raw or b"")[:DEAD_LETTER_RAW_BYTES], case.name
        else:
            assert verdicts.get(case.stored["trace_id"]) == 1, f"{case.name}: not exactly one verdict"
    n_bad = sum(c.expect == "dead_letter" for c in hostile.cases)
    assert len(letters) == n_bad and hostile.run.count("SELECT count() FROM {db}.dead_letters FINAL") == n_bad
    assert len(verdicts) == len(hostile.cases) - n_bad + 3  # + authfail, boom and the trace sent afterwards


def test_the_workers_survive_and_judge_a_trace_sent_after_the_corpus(hostile):
    assert all(process.is_running(w) for w in hostile.workers)
    (label, source), = hostile.rows(f"SELECT label, source FROM {{db}}.verdicts FINAL "
                                    f"WHERE trace_id = '{hostile.after_id}'")
    assert source == "inline" and label in ("pass", "fail")


def test_the_tables_exist_and_stored_strings_round_trip_byte_for_byte(hostile):
    db = hostile.run.db
    tables = {t for (t,) in hostile.run.rows(f"SELECT name FROM system.tables WHERE database = '{db}'")}
    assert {"verdicts", "frontier_verdicts", "disagreements", "dead_letters", "gold_labels",
            "schema_migrations"} <= tables
    assert hostile.run.count("SELECT count() FROM {db}.schema_migrations FINAL") == len(MIGRATIONS)
    columns = ("trace_id", "tenant", "app", "model", "criterion")
    for case in hostile.cases:
        if case.expect != "verdict":
            continue
        hexes = ", ".join(f"hex({c})" for c in columns)
        rows = hostile.run.rows(f"SELECT {hexes} FROM {{db}}.verdicts FINAL "
                                f"WHERE trace_id = unhex('{case.stored['trace_id'].encode().hex()}')")
        assert len(rows) == 1, case.name
        stored = {c: bytes.fromhex(v).decode() for c, v in zip(columns, rows[0])}
        for column, expected in case.stored.items():
            assert stored[column] == expected, (case.name, column, stored[column])


def test_injected_instructions_do_not_change_the_frontier_verdict(hostile):
    for case in hostile.cases:
        if case.frontier_label is None:
            continue
        status, label, error = hostile.rows(f"SELECT status, label, error FROM {{db}}.frontier_verdicts FINAL "
                                            f"WHERE trace_id = '{case.stored['trace_id']}'")[0]
        assert (status, label) == ("ok", case.frontier_label), (case.name, status, label, error)


def _forms(secret: str) -> set[bytes]:
    raw = secret.encode()
    return {raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw.hex().encode(),
            base64.b64encode(b"judgeline:" + raw), base64.b64encode(b"default:" + raw), f"Bearer {secret}".encode()}


def _topic_messages(settings) -> list[bytes]:
    """Every message of every topic on the broker, read from the beginning (keys, values and headers)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({**settings.kafka.client_config(), "group.id": f"scan-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "session.timeout.ms": 6000})
    try:
        topics = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for name, meta in topics.items()
                         for p in meta.partitions])
        out: list[bytes] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3:
            for m in consumer.consume(500, timeout=0.5):
                if m.error():
                    continue
                idle_since = time.monotonic()
                out += [m.key() or b"", m.value() or b""] + [v or b"" for _, v in (m.headers() or [])]
        return out
    finally:
        consumer.close()


def test_no_secret_appears_in_logs_topics_tables_errors_or_files(hostile, stack):
    run = hostile.run
    key = hostile.secrets["api_key"]
    assert f"Bearer {key}" in hostile.seen_auth, "the key was not used: the scan would prove nothing"
    errors = [e for (e,) in run.rows("SELECT error FROM {db}.frontier_verdicts FINAL WHERE error != ''")]
    assert any("Bearer **********" in e for e in errors), "the 401 echoing the key should have been recorded, masked"
    statuses = dict(run.rows("SELECT trace_id, status FROM {db}.frontier_verdicts FINAL WHERE trace_id IN "
                             f"('{hostile.prefix}authfail', '{hostile.prefix}boom')"))
    assert statuses == {f"{hostile.prefix}authfail": "rejected", f"{hostile.prefix}boom": "retries_exhausted"}

    haystacks: dict[str, bytes] = {}
    for path in Path(stack.state_dir).rglob("*"):  # logs of the workers, replay and stack, Faust data, records
        if path.is_file() and path.stat().st_size < 64 * 1024 * 1024:
            haystacks[str(path)] = path.read_bytes()
    assert any("hostile-frontier" in name for name in haystacks), "the worker logs should be under the state dir"
    for w in hostile.workers:
        haystacks[f"cmdline of {w.name}"] = Path(f"/proc/{w.pid}/cmdline").read_bytes()
    for i, message in enumerate(_topic_messages(run.settings)):
        haystacks[f"topic message {i}"] = message
    client = connect(run.settings)
    for (table,) in run.rows(f"SELECT name FROM system.tables WHERE database = '{run.db}'"):
        haystacks[f"table {table}"] = client.raw_query(f"SELECT * FROM {run.db}.`{table}` FORMAT TabSeparated")
    haystacks["test process log"] = hostile.test_log.encode()
    assert len(haystacks) > 20
    environ = Path(f"/proc/{hostile.workers[1].pid}/environ").read_bytes()  # where the key lives, by design
    assert hostile.secrets["api_key"].encode() in environ, "positive control: the scan must find a planted secret"
    for name, secret in hostile.secrets.items():
        for form in _forms(secret):
            leaks = [where for where, data in haystacks.items() if form in data]
            assert leaks == [], f"the {name} secret ({form[:12]!r}...) leaked into {leaks}"


def test_the_workers_and_the_replay_server_listen_on_loopback_only(hostile):
    for record in hostile.run.processes:
        addresses = listening_addresses(record.pid)
        assert addresses, f"{record.name} listens on nothing"  # workers: the web port; replay: its HTTP port
        assert addresses <= LOOPBACK_HEX, (record.name, addresses)
