"""The ClickHouse sink on the real store: every table written, values round-trip, a redelivered batch is stored once."""

import asyncio
from datetime import datetime, timezone

import pytest

from judge_engine.online.pipeline import Incoming, Rows, dead_letter
from schemas import Disagreement, FrontierVerdict, Verdict
from streams.sink import COLUMNS, ClickHouseStore, columns, row

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)


def rows(n: int) -> Rows:
    verdicts = [Verdict(trace_id=f"t{i}", kind="pointwise", criterion="hallucination", label="pass", score=0.8,
                        confidence=0.8, judge_name="judge", judge_version="2", latency_ms=3.5, trace_time=T0,
                        route_reason="low_confidence" if i % 2 else None, produced_at=T0 if i else None)
                for i in range(n)]
    fv = FrontierVerdict(trace_id="t1", kind="pointwise", criterion="hallucination", judge_name="gpt-4", label="fail",
                         request_reason="low_confidence", inline_label="pass", inline_judge_version="2",
                         input_tokens=120, output_tokens=9, cost_usd=0.0015, attempts=1, trace_time=T0)
    d = Disagreement(trace_id="t1", kind="pointwise", criterion="hallucination", inline_label="pass",
                     inline_confidence=0.8, inline_judge_version="2", frontier_label="fail", frontier_judge="gpt-4",
                     request_reason="low_confidence", trace_time=T0)
    bad = Incoming(value=b"\xff\x00 not json", key=None, topic="judgeline.traces", partition=3, offset=17,
                   timestamp=T0)
    return Rows(verdicts=verdicts, frontier_verdicts=[fv], disagreements=[d],
                dead_letters=[dead_letter(bad, "(message): not valid UTF-8 at byte 0", "parse")])


def test_rows_are_stored_once_even_when_written_twice(store):
    client, settings = store
    db = settings.clickhouse.database
    settings = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(update={"insert_batch_rows": 3})})
    sink = ClickHouseStore(settings)
    try:
        batch = rows(7)  # three chunks of verdicts
        asyncio.run(sink.write(batch))
        asyncio.run(sink.write(batch))  # a redelivered batch
        asyncio.run(sink.write(Rows()))  # nothing to do
    finally:
        sink.close()
    counts = {t: client.query(f"SELECT count() FROM {db}.{t} FINAL").result_rows[0][0]
              for t in ("verdicts", "frontier_verdicts", "disagreements", "dead_letters")}
    assert counts == {"verdicts": 7, "frontier_verdicts": 1, "disagreements": 1, "dead_letters": 1}
    routed = client.query(f"SELECT trace_id, routed, route_reason, produced_at, judged_at FROM {db}.verdicts FINAL "
                          "WHERE trace_id IN ('t0', 't1') ORDER BY trace_id").result_rows
    assert [(r[0], r[1], r[2]) for r in routed] == [("t0", False, ""), ("t1", True, "low_confidence")]
    assert routed[0][3] is None and routed[1][3] == T0.replace(tzinfo=None)  # returned as naive UTC
    letter = client.query(f"SELECT hex(raw), key, stage, partition, offset FROM {db}.dead_letters FINAL").result_rows
    assert letter == [(b"\xff\x00 not json".hex().upper(), None, "parse", 3, 17)]
    fv = client.query(f"SELECT label, label_swapped, status, input_tokens, cost_usd FROM {db}.frontier_verdicts FINAL")
    assert fv.result_rows == [("fail", "", "ok", 120, 0.0015)]


def test_an_unreachable_store_raises_and_the_next_write_reconnects(store):
    client, settings = store
    down = settings.model_copy(update={"clickhouse": settings.clickhouse.model_copy(
        update={"dsn": "http://127.0.0.1:9"})})
    sink = ClickHouseStore(down)
    with pytest.raises(Exception):
        asyncio.run(sink.write(rows(1)))
    assert sink._client is None  # dropped: the next attempt connects afresh


def test_a_worker_never_opens_the_embedded_engine_itself(tmp_path):
    from conftest import make_settings

    settings = make_settings(stack={"state_dir": tmp_path})  # a chdb:// DSN and no store server running
    sink = ClickHouseStore(settings)
    with pytest.raises(ConnectionError, match="store server is not running"):
        asyncio.run(sink.write(rows(1)))
    assert not (tmp_path / "clickhouse").exists()  # the path was not opened in this process


def test_stored_frontier_verdicts_read_back_as_the_messages_written(store):
    _, settings = store
    sink = ClickHouseStore(settings)
    try:
        batch = rows(3)
        asyncio.run(sink.write(batch))
        found = asyncio.run(sink.frontier_verdicts(["t1", "t2", "x' OR 1=1 --"], "gpt-4"))
        assert asyncio.run(sink.frontier_verdicts(["t1"], "another-judge")) == []
        assert asyncio.run(sink.frontier_verdicts([], "gpt-4")) == []
    finally:
        sink.close()
    (fv,) = found
    written = batch.frontier_verdicts[0]
    assert fv.model_dump(exclude={"judged_at"}) == written.model_dump(exclude={"judged_at"})
    assert fv.judged_at == written.judged_at.replace(microsecond=written.judged_at.microsecond // 1000 * 1000)


def test_columns_store_none_json_and_maps_as_each_column_needs():
    """The column-by-column mapping (issue 13): None is '' in a plain column and NULL in a Nullable one, JSON columns
    are json.dumps text (sorted keys, non-ASCII kept), a map's missing label is '', other values pass unchanged;
    ``row`` gives the same values one message at a time."""
    from schemas import Trace
    from schemas.gold import GoldLabel

    traces = [Trace(trace_id="a", kind="pointwise", criterion="hallucination", question="q", answer="x",
                    metadata={"z": 1, "a": "é"}, timestamp=T0),
              Trace(trace_id="b", kind="pointwise", criterion="hallucination", question="q", answer="y",
                    span_id="s", model="m", context="c", timestamp=T0)]
    cols = dict(zip(COLUMNS["traces"], columns("traces", traces)))
    assert cols["span_id"] == ["", "s"] and cols["model"] == ["", "m"]  # plain String columns: None -> ''
    assert cols["context"] == [None, "c"] and cols["answer_a"] == [None, None]  # Nullable columns keep NULL
    assert cols["metadata"] == ['{"a": "é", "z": 1}', "{}"]
    assert cols["answer"] == ["x", "y"] and cols["timestamp"] == [T0, T0]
    assert [list(r) for r in zip(*columns("traces", traces))] == [row("traces", t) for t in traces]
    gold = GoldLabel(id="g1", source="s", kind="pointwise", criterion="hallucination", question="q", answer="a",
                     teacher={"gpt": "fail", "claude": None})
    assert dict(zip(COLUMNS["gold_labels"], columns("gold_labels", [gold])))["teacher"] == [{"gpt": "fail",
                                                                                               "claude": ""}]
    assert columns("verdicts", []) == [[] for _ in COLUMNS["verdicts"]]
