"""The report reads at a glance: it opens with the on-call figures computed from the stored rows (real store), and
its plots fit the data they have (bars for one period, lines over the periods covered)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from operations import report
from operations.analytics import Analytics, Window
from schemas import DeadLetter, FrontierVerdict, Trace, Verdict
from streams.sink import ClickHouseStore

T0 = datetime(2026, 11, 1, 12, 10, tzinfo=timezone.utc)


def test_one_period_is_drawn_as_bars_and_several_as_lines(tmp_path):
    one = {"shop/correctness fail": [(T0, 0.25)], "shop/correctness B wins": [(T0, 0.5)]}
    path, kind = report.over_time(one, tmp_path / "one.png", "fail rate", "rate")
    assert kind == "bars" and path.stat().st_size > 0
    many = {"a": [(T0, 0.2), (T0 + timedelta(hours=1), 0.3)]}
    assert report.over_time(many, tmp_path / "many.png", "fail rate", "rate")[1] == "lines"
    assert report.over_time({}, tmp_path / "none.png", "fail rate", "rate")[1] == "bars"


def _trace(i: int) -> Trace:
    return Trace(trace_id=f"r{i}", kind="pointwise", criterion="correctness", app="shop", question="q?", answer="a.",
                 timestamp=T0)


@pytest.mark.integration
def test_the_page_opens_with_the_on_call_figures_from_the_store(store, tmp_path):
    client, settings = store
    sink = ClickHouseStore(settings, client=client)
    traces = [_trace(i) for i in range(10)]
    # 10 inline verdicts, 4 routed; the frontier judged the 4 and disagrees on 1; 2 dead letters
    verdicts = [Verdict(**t.row_keys(), label="pass", score=0.9, confidence=0.5 if i < 4 else 0.95,
                        judge_name="judge", judge_version="7", latency_ms=10 + i,
                        route_reason="low_confidence" if i < 4 else None, produced_at=T0,
                        judged_at=T0 + timedelta(seconds=1))
                for i, t in enumerate(traces)]
    frontier = [FrontierVerdict(trace_id=t.trace_id, kind=t.kind, criterion=t.criterion, app=t.app,
                                judge_name="gpt-4o", label="fail" if i == 0 else "pass", request_reason="low_confidence",
                                input_tokens=100, output_tokens=20, cost_usd=0.25, attempts=1, trace_time=T0)
                for i, t in enumerate(traces[:4])]
    letters = [DeadLetter(raw=b"x", error="bad", stage=stage, topic="judgeline.traces", partition=0, offset=i,
                          message_time=T0) for i, stage in enumerate(("parse", "judge"))]
    sink.insert_sync("verdicts", verdicts)
    sink.insert_sync("frontier_verdicts", frontier)
    sink.insert_sync("dead_letters", letters)
    results = Analytics(client, settings.clickhouse.database, Window(), judge="gpt-4o").report()
    figures = {name: (value, detail) for name, value, detail in report.headline(results)}
    assert figures["verdicts"][0] == "10"
    assert figures["routed to the frontier"] == ("40.0%", "4 of 10 inline verdicts")
    assert figures["disagreement"][0] == "25.0%"
    assert figures["frontier spend"] == ("$1.00", "4 calls, 480 tokens")
    assert figures["inline judge latency"][0] == "15 ms p50 / 19 ms p95"  # quantileExact: the upper median
    assert figures["dead letters"] == ("2", "judge 1, parse 1")
    page = report.write_html(results, tmp_path, "all traces").read_text()
    body = page[page.index("<body>"):]
    first_section = body.index("<h2")
    head = body[:first_section]  # the figures come before any section
    for name, (value, _) in figures.items():
        assert f">{name}<" in head and f">{value}<" in head.replace("&#x27;", "'")
    assert len(re.findall(r"data:image/png;base64,", page)) == 5
    text = report.text_tables(results)
    assert text.startswith("== At a glance\nverdicts: 10")
