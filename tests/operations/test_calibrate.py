"""`judgeline calibrate` and `judgeline report` on the real store, on rows written through the real sink and a gold
file imported with `judgeline gold import`, checked against values computed here independently."""

import asyncio
import base64
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score
from typer.testing import CliRunner

from cli.main import app
from judge_engine.online.pipeline import Rows
from schemas import FrontierVerdict, Verdict
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
FLIP = {"pass": "fail", "fail": "pass", "A": "B", "B": "A", "tie": "A"}
COST = 0.004


def _cli(monkeypatch, settings, *args):
    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(settings.stack.state_dir))
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", settings.clickhouse.database)
    monkeypatch.setenv("JUDGELINE_ROUTING__ACCEPTED_ERROR_RATE", "0.1")
    monkeypatch.setenv("JUDGELINE_ROUTING__CALIBRATION_SAMPLE_RATE", "0.05")
    monkeypatch.setenv("JUDGELINE_ROUTING__THRESHOLD", "0.7")
    return CliRunner().invoke(app, list(map(str, args)))


def populate(settings, tmp_path):
    """Pointwise 'hallucination': 40 verdicts at 0.57 and 20 at 0.67 routed (12 and 4 disagreements), 140 at 0.87 of
    which 14 are the calibration sample (1 disagreement); 150 of them gold items. Pairwise 'overall': 30 routed at
    0.47, 5 disagreements, all gold (fewer than 100). Plus rows that must not count: an older judge version's, another
    frontier judge, a verdict outside the window."""
    rng = random.Random(7)
    verdicts, frontier, gold, expected = [], [], [], {"hallucination": [], "overall": []}

    def add(tid, kind, criterion, conf, reason, disagree, status="ok", human=True, version="2", when=T0):
        labels = ("pass", "fail") if kind == "pointwise" else ("A", "B", "tie")
        inline = rng.choice(labels)
        v = Verdict(trace_id=tid, tenant="acme", app="chat", model="m1", kind=kind, criterion=criterion,
                    label=inline, score=0.5, confidence=conf, judge_name="judge", judge_version=version,
                    latency_ms=10 + len(verdicts) % 50, route_reason=reason, trace_time=when, produced_at=when,
                    judged_at=when + timedelta(seconds=int(version)))
        verdicts.append(v)
        f_label = None
        if reason:
            f_label = FLIP[inline] if disagree else inline
            frontier.append(FrontierVerdict(
                trace_id=tid, tenant="acme", app="chat", kind=kind, criterion=criterion, judge_name="gpt-4",
                status=status, label=f_label if status == "ok" else None, request_reason=reason, inline_label=inline,
                input_tokens=300, output_tokens=10, cost_usd=COST, attempts=2, latency_ms=40, trace_time=when))
            if status != "ok":
                f_label = None
        h = None
        if human:
            # the gold label: the frontier's most of the time, so both judges have something to be measured on
            h = f_label if f_label and rng.random() < 0.9 else rng.choice(labels)
            item = {"id": tid, "source": "test-gold", "kind": kind, "criterion": criterion, "question": "q?",
                    "human_label": h}
            item |= {"answer": "a"} if kind == "pointwise" else {"answer_a": "a", "answer_b": "b"}
            gold.append(item)
        if version == "2" and when == T0:
            expected[criterion].append({"inline": inline, "conf": conf, "frontier": f_label, "human": h,
                                        "costed": bool(reason)})

    for i in range(40):
        add(f"p{i}", "pointwise", "hallucination", 0.57, "low_confidence", i < 12)
    for i in range(40, 60):
        add(f"p{i}", "pointwise", "hallucination", 0.67, "low_confidence", i < 44,
            status="retries_exhausted" if i == 59 else "ok")
    for i in range(60, 200):
        add(f"p{i}", "pointwise", "hallucination", 0.87, "calibration_sample" if i < 74 else None, i == 60,
            human=i < 150)
    for i in range(30):
        add(f"q{i}", "pairwise", "overall", 0.47, "low_confidence", i < 5)
    # must not count: the older version's verdicts (traces it judged before the deploy; a trace judged by both has
    # one verdict, the newest: the verdicts table is keyed by the trace), a verdict before the window
    for i in range(10):
        add(f"v1-{i}", "pointwise", "hallucination", 0.99, None, False, human=False, version="1")
    add("old", "pointwise", "hallucination", 0.99, "low_confidence", True, human=False, when=T0 - timedelta(days=40))
    # another frontier judge on a trace: ignored (the report is for gpt-4)
    frontier.append(frontier[0].model_copy(update={"judge_name": "other", "label": FLIP[frontier[0].label]}))

    expected["all"] = verdicts
    sink = ClickHouseStore(settings)
    try:
        asyncio.run(sink.write(Rows(verdicts=verdicts, frontier_verdicts=frontier)))
    finally:
        sink.close()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(g) for g in gold) + "\n")
    return path, expected


def _estimate(rows, t):
    """Stratified disagreement at threshold t, written out for the three confidence levels of the pointwise set."""
    levels = sorted({r["conf"] for r in rows if r["conf"] >= t})
    total = num = 0.0
    for level in levels:
        at = [r for r in rows if r["conf"] == level]
        seen = [r for r in at if r["frontier"] is not None]
        num += len(at) * sum(r["frontier"] != r["inline"] for r in seen) / len(seen)
        total += len(at)
    return num / total


def test_calibrate_recommends_the_threshold_and_measures_both_judges(store, tmp_path, monkeypatch):
    client, settings = store
    gold_file, expected = populate(settings, tmp_path)
    imported = _cli(monkeypatch, settings, "gold", "import", gold_file)
    assert imported.exit_code == 0, imported.output
    out = tmp_path / "cal"
    result = _cli(monkeypatch, settings, "calibrate", "--since", "2026-10-15", "--tenant", "acme", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "calibration.json").read_text())
    assert (out / "calibration.reliability.png").stat().st_size > 5000
    assert (out / "calibration.cost_accuracy.png").stat().st_size > 5000

    p = report["criteria"]["hallucination"]
    rows = expected["hallucination"]
    assert p["judge_version"] == "2" and p["judge_versions_in_window"] == {"2": 200, "1": 10}
    assert p["verdicts"] == 200 and p["gold_items"] == 150 and p["frontier_verdicts"] == 73  # 74 routed, 1 failed
    # the threshold: at 0.55 every level is accepted, at 0.60 the 0.57 level is routed, at 0.70 the 0.67 one too
    curve = {round(pt["threshold"], 2): pt for pt in p["threshold_curve"]}
    assert curve[0.55]["estimated_disagreement"] == pytest.approx(_estimate(rows, 0.5))
    assert curve[0.6]["estimated_disagreement"] == pytest.approx(_estimate(rows, 0.6))
    assert curve[0.7]["estimated_disagreement"] == pytest.approx(_estimate(rows, 0.7))
    assert _estimate(rows, 0.5) > 0.1 >= _estimate(rows, 0.6)
    rec = p["recommendation"]
    assert rec["threshold"] == pytest.approx(0.6)
    assert rec["frontier_fraction"] == pytest.approx(40 / 200)
    assert rec["frontier_fraction_with_sample"] == pytest.approx(40 / 200 + 0.05 * 160 / 200)
    assert rec["frontier_cost_usd"] == pytest.approx(COST * (40 + 0.05 * 160))
    assert p["current"]["frontier_fraction"] == pytest.approx(60 / 200)
    # sample sizes per bucket: the confident bucket is seen only through the calibration sample
    buckets = {round(b["lo"], 2): (b["observed"], b["traffic"]) for b in p["agreement_by_bucket"]}
    assert buckets == {0.55: (40, 40), 0.65: (19, 20), 0.85: (14, 140)}
    # frontier vs gold (TPR/TNR) and inline vs gold (kappa), computed here over the same items
    fg = [(r["frontier"], r["human"]) for r in rows if r["human"] and r["frontier"]]
    tpr = sum(f == "pass" for f, h in fg if h == "pass") / sum(h == "pass" for _, h in fg)
    tnr = sum(f == "fail" for f, h in fg if h == "fail") / sum(h == "fail" for _, h in fg)
    assert p["frontier_vs_gold"]["n"] == len(fg)
    assert p["frontier_vs_gold"]["tpr"] == pytest.approx(tpr) and p["frontier_vs_gold"]["tnr"] == pytest.approx(tnr)
    ig = [(r["inline"], r["human"]) for r in rows if r["human"]]
    assert p["inline_vs_gold"]["kappa"] == pytest.approx(cohen_kappa_score(*zip(*ig)))
    assert ("TPR" in " ".join(p["warnings"])) == (tpr < 0.9)
    assert ("TNR" in " ".join(p["warnings"])) == (tnr < 0.9)

    q = report["criteria"]["overall"]
    pairs = [(r["frontier"], r["human"]) for r in expected["overall"]]
    assert q["frontier_vs_gold"]["accuracy"] == pytest.approx(accuracy_score(*zip(*pairs)))
    assert q["frontier_vs_gold"]["kappa"] == pytest.approx(cohen_kappa_score(*zip(*pairs)))
    assert q["inline_vs_frontier"]["accuracy"] == pytest.approx(25 / 30)
    assert q["recommendation"] is None  # everything it saw disagrees 1 in 6 > 0.1
    # loud: on stderr and in the JSON
    assert any("overall: only 30 gold items" in w for w in report["warnings"])
    assert "WARNING: overall: only 30 gold items" in result.stderr
    assert "RECOMMENDED threshold 0.60" in result.stdout

    empty = _cli(monkeypatch, settings, "calibrate", "--since", "2027-01-01", "--out", tmp_path / "none")
    assert empty.exit_code == 0 and "nothing to calibrate" in empty.stderr


def test_report_prints_every_section_and_writes_a_self_contained_html(store, tmp_path, monkeypatch):
    client, settings = store
    gold_file, expected = populate(settings, tmp_path)
    result = _cli(monkeypatch, settings, "report", "--since", "2026-10-15", "--interval", "day", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    for name in ("verdict_rates", "routing", "frontier_spend", "disagreement_by_bucket", "drift", "latency"):
        assert f"-- {name}" in result.stdout
    page = (tmp_path / "report.html").read_text()
    for title in ("Verdicts and fail rates", "Routing and frontier spend", "Disagreement and drift", "Latency"):
        assert f">{title}</h2>" in page
    images = page.split('src="data:image/png;base64,')[1:]
    assert len(images) == 5 and all(base64.b64decode(i.split('"')[0])[:4] == b"\x89PNG" for i in images)
    assert 'src="http' not in page and page.count("<summary>SQL</summary>") == 9  # each query's SQL (dead letters, shadow too)
    # a figure from each section, against the rows written
    versions_1 = 10
    fails = sum(v.label == "fail" for v in expected["all"] if v.criterion == "hallucination" and v.trace_time == T0)
    rates = table(result.stdout, "verdict_rates")
    hall = next(r for r in rates if r[4] == "hallucination")
    assert hall[6] == str(200 + versions_1) and float(hall[7]) == pytest.approx(fails / 210, abs=1e-3)
    routing = next(r for r in table(result.stdout, "routing") if r[2] == "hallucination")
    assert routing[3] == "210" and float(routing[4]) == pytest.approx(74 / 210, abs=1e-3)
    spend = next(r for r in table(result.stdout, "frontier_spend") if r[2] == "hallucination" and r[3] == "gpt-4")
    assert spend[4:] == ["74", "73", "148", str(74 * 310), f"{74 * COST:.3f}"]
    buckets = {(r[0], r[1], r[2]): r[3:6] for r in table(result.stdout, "disagreement_by_bucket")}
    assert buckets[("hallucination", "2", "0.500")] == ["40", "40", "12"]
    assert buckets[("hallucination", "2", "0.600")] == ["20", "19", "4"]
    assert buckets[("hallucination", "2", "0.800")] == ["140", "14", "1"]
    latency = {r[0]: r[1] for r in table(result.stdout, "latency")}
    assert latency == {"1": str(versions_1), "2": "230"}


def table(stdout: str, name: str) -> list[list[str]]:
    """The rows of one printed table, split on whitespace (the checked columns have no empty cells)."""
    lines = stdout.splitlines()
    start = lines.index(f"-- {name}") + 2  # after the header
    rows = []
    for line in lines[start:]:
        if not line.strip() or line.startswith(("--", "==")):
            break
        rows.append(line.split())
    return rows
