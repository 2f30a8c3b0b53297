"""Property: no record, whatever its Kafka-level fields, stalls a worker or goes unaccounted for (issue 12, point 1).

Hypothesis draws at least 1,000 hostile *records* per run (``N_TRACES`` for the traces topic, ``N_REQUESTS`` for
the frontier-requests topic): timestamps of any int64 value (0 and negative ones included, 10**15 ms, the int64
bounds), keys that are absent, binary, text or up to 200 KB, headers of any number, size and encoding (absent
values, binary, 100 KB), and values that are valid messages, tombstones, random bytes, broken or wrong-typed JSON,
or over the size limit. They are produced with the real client to the real broker (Tansu) and consumed by real
``judgeline worker inline`` (constant stub judge) and ``judgeline worker frontier`` processes (replay frontier),
each delivery's partition and offset recorded. Then, after FINAL:

- every record whose value is a valid message has exactly one row of its outcome (a verdict for a trace, a frontier
  verdict for a frontier request) and no dead letter;
- every other record has exactly one dead letter, identified by its topic, partition and offset, and no verdict;
- nothing else was stored; both workers are still running; a valid trace sent afterwards is judged.

Generation is seeded per run by Hypothesis (``derandomize`` off) and replayable from the printed seed. The run
takes about a minute on two cores (see docs/reliability.md).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from schemas.trace import Trace
from schemas.verdict import FrontierRequest
from stack import process
from stack.workers import wait_until

pytestmark = pytest.mark.integration

N_TRACES = 700
N_REQUESTS = 350
INT64 = (-(2**63), 2**63 - 1)


@dataclass
class Record:
    key: bytes | None
    value_kind: str
    value: bytes | None  # None: a tombstone; filled for "valid" once the record's id is known
    headers: list[tuple[str, bytes | None]]
    timestamp: int


def _blob(size: int, seed: int) -> bytes:
    return bytes((seed + i * 131) % 256 for i in range(min(size, 256))) * (size // 256 + 1)


blobs = st.builds(lambda n, s: _blob(n, s)[:n], st.integers(4096, 200_000), st.integers(0, 255))
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
keys = st.one_of(st.none(), st.binary(max_size=64), texts.map(str.encode), blobs)
header_values = st.one_of(st.none(), st.binary(max_size=64), texts.map(str.encode),
                          st.integers(1, 100_000).map(lambda n: b"\xff" * n))
headers = st.lists(st.tuples(texts, header_values), max_size=6)
timestamps = st.one_of(st.integers(*INT64), st.sampled_from([0, -1, -5, 10**15, INT64[0], INT64[1], 946_684_799_999,
                                                             7_258_118_400_000, int(time.time() * 1000)]))
bad_values = st.one_of(
    st.tuples(st.just("tombstone"), st.none()),
    st.tuples(st.just("bytes"), st.binary(max_size=200)),
    st.tuples(st.just("json"), st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | texts,
                                            lambda inner: st.lists(inner, max_size=4)
                                            | st.dictionaries(texts, inner, max_size=4),
                                            max_leaves=12).map(lambda v: json.dumps(v).encode())),
    st.tuples(st.just("truncated"), st.integers(1, 60)),  # a valid message cut short (filled in below)
    st.tuples(st.just("oversize"), st.integers(262_145, 400_000).map(lambda n: b'{"a": "' + b"x" * n + b'"}')),
)
values = st.one_of(st.tuples(st.just("valid"), st.none()), st.tuples(st.just("valid"), st.none()), bad_values)
records = st.builds(lambda k, v, h, t: Record(k, v[0], v[1], h, t), keys, values, headers, timestamps)


def draw_records(n: int) -> list[Record]:
    """``n`` records drawn by Hypothesis (one example each)."""
    out: list[Record] = []

    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(records)
    def collect(record: Record) -> None:
        if len(out) < n:
            out.append(record)

    while len(out) < n:  # Hypothesis may stop early on a small space; it never does here, but be sure
        collect()
    return out


def _fill(records: list[Record], valid_value) -> list[str | None]:
    """Fill the valid (and truncated) values with messages of unique ids; returns each record's id (None if bad)."""
    ids: list[str | None] = []
    for i, r in enumerate(records):
        if r.value_kind in ("valid", "truncated"):
            full = valid_value(i)
            if r.value_kind == "valid":
                r.value = full
            else:
                r.value = full[: min(r.value if isinstance(r.value, int) else 10, len(full) - 1)]
        ids.append(f"{i}" if r.value_kind == "valid" else None)
    return ids


def _produce(settings, topic: str, records: list[Record]) -> list[tuple[int, int]]:
    """Produce each record as drawn; returns each one's (partition, offset)."""
    from confluent_kafka import Producer

    producer = Producer({**settings.kafka.client_config(), "acks": "all", "linger.ms": 5,
                         "message.max.bytes": 1_000_000})
    where: list[tuple[int, int] | None] = [None] * len(records)
    errors: list[str] = []

    def delivered(i):
        def cb(err, msg):
            if err is not None:
                errors.append(f"record {i}: {err}")
            else:
                where[i] = (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(records):
        while True:
            try:
                producer.produce(topic, value=r.value, key=r.key, headers=r.headers or None, timestamp=r.timestamp,
                                 on_delivery=delivered(i))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0 and errors == [], errors[:5]
    return [w for w in where if w is not None]


def test_a_thousand_hostile_records_each_end_as_a_verdict_or_a_dead_letter(fault_run, sample_traces, sample_gold):
    run = fault_run(routing={"threshold": 0.0, "calibration_sample_rate": 0.0, "without_policy": "threshold"},
                    stream={"batch_size": 32, "frontier_batch_size": 32})
    from doubles.frontier_replay import Faults

    run.settings = run.replay(sample_gold, Faults())
    prefix = f"hr{uuid.uuid4().hex[:6]}-"
    pointwise = sample_traces["pointwise"]

    def trace(i: int, part: str) -> Trace:
        source = pointwise[i % len(pointwise)]
        return source.model_copy(update={"trace_id": f"{prefix}{part}{i}"})

    trace_records, request_records = draw_records(N_TRACES), draw_records(N_REQUESTS)
    trace_ids = _fill(trace_records, lambda i: trace(i, "t").to_bytes())
    request_ids = _fill(request_records,
                        lambda i: FrontierRequest(trace=trace(i, "r"), reason="forced").to_bytes())
    kinds = {r.value_kind for r in trace_records + request_records}
    assert {"valid", "tombstone", "bytes", "json", "truncated", "oversize"} <= kinds, kinds

    workers = [run.worker("inline", stub_ms=1, ready=False), run.worker("frontier", ready=False)]
    for w in workers:
        run.wait_ready(w)
    topics = run.settings.kafka.topics
    started = time.monotonic()
    trace_at = _produce(run.settings, topics.traces, trace_records)
    request_at = _produce(run.settings, topics.frontier_requests, request_records)
    assert len(trace_at) == N_TRACES and len(request_at) == N_REQUESTS

    n_bad = sum(i is None for i in trace_ids) + sum(i is None for i in request_ids)
    n_valid_traces = sum(i is not None for i in trace_ids)
    n_valid_requests = sum(i is not None for i in request_ids)

    def accounted() -> int:
        return (run.count("SELECT count() FROM {db}.dead_letters FINAL WHERE stage = 'parse'")
                + run.count(f"SELECT count() FROM {{db}}.verdicts FINAL WHERE startsWith(trace_id, '{prefix}t')")
                + run.count("SELECT count() FROM {db}.frontier_verdicts FINAL"))

    total = n_bad + n_valid_traces + n_valid_requests
    if not wait_until(lambda: accounted() >= total, 180):
        letters = set(run.rows("SELECT topic, partition, offset FROM {db}.dead_letters FINAL"))
        missing = [(topic, i, r.value_kind, at[i]) for topic, recs, ids, at in
                   ((topics.traces, trace_records, trace_ids, trace_at),
                    (topics.frontier_requests, request_records, request_ids, request_at))
                   for i, r in enumerate(recs) if ids[i] is None and (topic, *at[i]) not in letters]
        raise AssertionError(f"{accounted()} of {total} records accounted for; bad records without a dead letter "
                             f"(topic, index, kind, (partition, offset)): {missing[:20]}")
    elapsed = time.monotonic() - started

    after = trace(10**6, "t")  # a valid trace after all of it
    _produce(run.settings, topics.traces, [Record(after.trace_id.encode(), "valid", after.to_bytes(), [],
                                                  int(time.time() * 1000))])
    assert wait_until(lambda: run.count(f"SELECT count() FROM {{db}}.verdicts FINAL "
                                        f"WHERE trace_id = '{after.trace_id}'") == 1, 60)
    time.sleep(1.5)  # a duplicate or a stray row would land now

    fverdicts = dict(run.rows("SELECT trace_id, status FROM {db}.frontier_verdicts FINAL"))
    frontier_ids = {f"{prefix}r{i}" for i, t in enumerate(request_ids) if t is not None}
    assert set(fverdicts) == frontier_ids
    assert run.count("SELECT count() FROM (SELECT trace_id FROM {db}.frontier_verdicts FINAL "
                     "GROUP BY trace_id HAVING count() > 1)") == 0
    ok = {t for t, s in fverdicts.items() if s == "ok"}
    assert ok, "the replay frontier judged none of the valid requests: the check below would prove nothing"

    letters = {(t, p, o): stage for t, p, o, stage in run.rows(
        "SELECT topic, partition, offset, any(stage) FROM {db}.dead_letters FINAL GROUP BY topic, partition, offset")}
    parse_letters = {(topics.traces, *trace_at[i]) for i, t in enumerate(trace_ids) if t is None}
    parse_letters |= {(topics.frontier_requests, *request_at[i]) for i, t in enumerate(request_ids) if t is None}
    # a forced request has no inline verdict: when the frontier gave none either, the trace is a dead letter
    frontier_letters = {(topics.frontier_requests, *request_at[i]) for i, t in enumerate(request_ids)
                        if t is not None and fverdicts[f"{prefix}r{i}"] != "ok"}
    assert {k for k, s in letters.items() if s == "parse"} == parse_letters
    assert {k for k, s in letters.items() if s == "frontier"} == frontier_letters
    assert set(letters) == parse_letters | frontier_letters

    verdicts = dict(run.rows("SELECT trace_id, count() FROM {db}.verdicts FINAL GROUP BY trace_id"))
    inline_ids = {f"{prefix}t{i}" for i, t in enumerate(trace_ids) if t is not None} | {after.trace_id}
    assert {t for t in verdicts if t.startswith(f"{prefix}t")} == inline_ids
    assert {t for t in verdicts if t.startswith(f"{prefix}r")} == ok  # the frontier's verdict for the trace
    assert all(n == 1 for n in verdicts.values())
    produced = run.rows("SELECT min(produced_at), max(produced_at) FROM {db}.verdicts FINAL WHERE source = 'inline'")
    assert all(v is None or 2000 <= v.year < 2200 for v in produced[0])  # an absurd time never reaches a column

    assert all(process.is_running(w) for w in workers), "a worker died"
    print(f"\n{N_TRACES + N_REQUESTS} hostile records ({n_bad} dead letters) accounted for in {elapsed:.1f} s")
