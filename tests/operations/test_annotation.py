"""The annotation queue on the real store: the policy's order, filters, labels written as gold (two people both
kept, agreement reported, what `judgeline calibrate` reads), clear errors; and the page in a real browser (Debian's
headless Chromium driven by selenium): a person labels a trace and the row lands in ClickHouse."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from datetime import datetime, timezone

import pytest

from operations import annotation
from operations.analytics import Analytics, Window
from schemas import FrontierVerdict, Trace, Verdict
from schemas.analytics_sql import CALIBRATION_ROWS
from streams.sink import ClickHouseStore

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 1, 12, tzinfo=timezone.utc)


def _trace(trace_id, kind="pointwise", criterion="correctness", app="shop", **extra) -> Trace:
    answers = {"answer_a": "Paris.", "answer_b": "Lyon."} if kind == "pairwise" else {"answer": "Paris."}
    return Trace(trace_id=trace_id, kind=kind, criterion=criterion, app=app,
                 question=f"Capital of France? ({trace_id})", timestamp=T0, **answers, **extra)


def _verdict(t: Trace, label: str, confidence: float, reason: str) -> Verdict:
    return Verdict(**t.row_keys(), label=label, score=confidence, confidence=confidence, judge_name="judge",
                   judge_version="7", latency_ms=3, route_reason=reason)


def _frontier(t: Trace, label: str, reason: str) -> FrontierVerdict:
    return FrontierVerdict(**{k: v for k, v in t.row_keys().items() if k != "trace_time"}, trace_time=t.timestamp,
                           judge_name="gpt-4o", label=label, critique=f"The frontier says {label}.",
                           request_reason=reason)


# (trace, inline label, confidence, route reason, frontier label or None)
SEED = [
    (_trace("disagree-1", reference="Paris is the capital."), "pass", 0.62, "low_confidence", "fail"),
    (_trace("pair-disagree", kind="pairwise", context="Doc: Paris is the capital."), "A", 0.9,
     "calibration_sample", "B"),
    (_trace("low-1"), "pass", 0.30, "low_confidence", None),
    (_trace("low-2"), "fail", 0.50, "low_confidence", "fail"),
    (_trace("sample-1"), "pass", 0.95, "calibration_sample", "pass"),
    (_trace("other-app", app="billing", criterion="helpfulness"), "pass", 0.4, "low_confidence", None),
    (_trace("cold-start"), "pass", 0.97, "route_all", None),
    (_trace("novel-1"), "pass", 0.99, "novel", None),
]


@pytest.fixture
def seeded(store):
    client, settings = store
    sink = ClickHouseStore(settings, client=client)
    sink.insert_sync("traces", [t for t, *_ in SEED])
    sink.insert_sync("verdicts", [_verdict(t, label, c, r) for t, label, c, r, _ in SEED])
    sink.insert_sync("frontier_verdicts", [_frontier(t, f, r) for t, _, _, r, f in SEED if f])
    return client, settings, sink


def _ids(items):
    return [i.trace_id for i in items]


def test_the_queue_puts_disagreements_then_low_confidence_then_the_sample(seeded):
    client, settings, _ = seeded
    db = settings.clickhouse.database
    items = annotation.next_items(client, db, "ann", limit=10)
    assert sorted(_ids(items[:2])) == ["disagree-1", "pair-disagree"]
    assert _ids(items[2:5]) == ["low-1", "other-app", "low-2"]  # lowest confidence first
    assert sorted(_ids(items[5:7])) == ["cold-start", "sample-1"] and _ids(items[7:]) == ["novel-1"]
    assert [i.group for i in items] == ["disagreement"] * 2 + ["low_confidence"] * 3 + ["sample"] * 2 + ["other"]
    assert _ids(annotation.next_items(client, db, "ann", "low_confidence", app="shop", limit=10)) == ["low-1", "low-2"]
    assert sorted(_ids(annotation.next_items(client, db, "ann", "sample", limit=10))) == ["cold-start", "sample-1"]
    assert _ids(annotation.next_items(client, db, "ann", criterion="helpfulness", limit=10)) == ["other-app"]
    pair = next(i for i in items if i.kind == "pairwise")
    shown = pair.shown()
    assert (shown["answer_a"], shown["answer_b"], shown["context"]) == ("Paris.", "Lyon.", "Doc: Paris is the capital.")
    assert "reveal" not in shown and "B" not in json.dumps(shown)  # no verdict before the person answers
    assert pair.reveal["frontier"]["label"] == "B" and pair.reveal["inline"]["label"] == "A"
    with pytest.raises(ValueError, match="policy"):
        annotation.next_items(client, db, "ann", "newest")


def test_labels_become_gold_two_people_are_both_kept_and_agreement_is_reported(seeded):
    client, settings, sink = seeded
    db = settings.clickhouse.database
    items = {i.trace_id: i for i in annotation.next_items(client, db, "ann", limit=10)}
    annotation.record_label(sink, items["disagree-1"], "ann", "fail", note="wrong city")
    annotation.record_label(sink, items["low-1"], "ann", "pass")
    annotation.record_label(sink, items["disagree-1"], "bob", "fail")
    annotation.record_label(sink, items["low-1"], "bob", "fail")
    assert "disagree-1" not in _ids(annotation.next_items(client, db, "ann", limit=10))  # ann is done with it
    assert "disagree-1" in _ids(annotation.next_items(client, db, "carol", limit=10))
    rows = client.query(f"SELECT source, human_label, meta FROM {db}.gold_labels_latest WHERE id = 'disagree-1' "
                        "ORDER BY source").result_rows
    assert [(s, h) for s, h, _ in rows] == [("annotation:ann", "fail"), ("annotation:bob", "fail")]
    meta = json.loads(rows[0][2])
    assert meta["annotator"] == "ann" and meta["note"] == "wrong city" and meta["labelled_at"].startswith("20")
    report = annotation.agreement(client, db)
    assert report["annotators"] == ["ann", "bob"]
    overall = report["overall"]
    assert (overall["traces_with_two_or_more"], overall["pairs"], overall["agreement"]) == (2, 2, 0.5)
    # pooled labels fail, fail, pass, fail: expected agreement 0.625, kappa (0.5 - 0.625) / 0.375
    assert overall["kappa"] == pytest.approx(-1 / 3, abs=1e-4)
    # what calibrate reads: the gold label joins the inline verdict on the trace id
    rows = Analytics(client, db, Window(), judge="gpt-4o").query(CALIBRATION_ROWS)
    assert {r["human_label"] for r in rows if r["criterion"] == "correctness" and r["human_label"]} == {"fail"}
    with pytest.raises(ValueError, match="label: 'A' does not fit a pointwise trace; choose pass or fail"):
        annotation.record_label(sink, items["low-2"], "ann", "A")
    with pytest.raises(ValueError, match="annotator"):
        annotation.record_label(sink, items["low-2"], "  ", "pass")


CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


class ServedPage:
    """The annotate app on a free 127.0.0.1 port, in a thread with its own event loop."""

    def __init__(self, settings, client):
        from aiohttp import web

        from operations.annotate_web import make_app

        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(settings, client))
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are missing: run `make browser` (apt-get install -y "
                    "chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))
    yield driver
    driver.quit()


def test_a_person_labels_a_trace_in_the_browser_and_it_lands_in_clickhouse(seeded, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    client, settings, _ = seeded
    db = settings.clickhouse.database
    page = ServedPage(settings, client)
    try:
        browser.get(page.url)
        wait = WebDriverWait(browser, 20)
        browser.find_element(By.ID, "annotator").send_keys("dana")
        browser.find_element(By.ID, "policy").send_keys("low")  # selects "low confidence"
        browser.find_element(By.ID, "app").send_keys("shop")
        browser.find_element(By.ID, "load").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "question"), "low-1"))
        assert not browser.find_element(By.ID, "reveal").is_displayed()  # verdicts hidden until answered
        assert browser.find_element(By.ID, "single").is_displayed()
        assert not browser.find_element(By.ID, "pair").is_displayed()
        body = browser.find_element(By.TAG_NAME, "body")
        body.send_keys("n")  # the note
        browser.switch_to.active_element.send_keys("answer is right", Keys.ESCAPE)
        body.send_keys("p")  # pass, by its shortcut
        wait.until(ec.visibility_of_element_located((By.ID, "reveal")))
        assert "Inline judge (judge v7): pass, confidence 0.3" in browser.find_element(By.ID, "verdicts").text
        rows = client.query(f"SELECT id, source, human_label, meta FROM {db}.gold_labels_latest").result_rows
        assert [(i, s, h) for i, s, h, _ in rows] == [("low-1", "annotation:dana", "pass")]
        assert json.loads(rows[0][3])["note"] == "answer is right"
        body.send_keys(Keys.ENTER)  # the next trace of the queue
        wait.until(ec.text_to_be_present_in_element((By.ID, "question"), "low-2"))
        assert not browser.find_element(By.ID, "reveal").is_displayed()
    finally:
        page.close()


def test_the_page_shows_pairwise_answers_side_by_side_and_refuses_a_nameless_label(seeded, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    client, settings, _ = seeded
    page = ServedPage(settings, client)
    try:
        browser.get(page.url)
        wait = WebDriverWait(browser, 20)
        browser.find_element(By.ID, "load").click()  # no name yet
        wait.until(ec.text_to_be_present_in_element((By.ID, "error"), "annotator"))
        browser.find_element(By.ID, "annotator").send_keys("erin")
        browser.find_element(By.ID, "criterion").send_keys("correctness")
        browser.find_element(By.ID, "policy").send_keys("dis")
        browser.find_element(By.ID, "load").click()
        for _ in range(2):  # the two disagreements, in the queue's hash order
            wait.until(ec.visibility_of_element_located((By.ID, "item")))
            if browser.find_element(By.ID, "pair").is_displayed():
                break
            browser.find_element(By.ID, "label-fail").click()
            wait.until(ec.visibility_of_element_located((By.ID, "reveal")))
            browser.find_element(By.ID, "next").click()
            wait.until(ec.invisibility_of_element_located((By.ID, "reveal")))
        assert browser.find_element(By.ID, "answer_a").text == "Paris."
        assert browser.find_element(By.ID, "answer_b").text == "Lyon."
        assert "Paris is the capital" in browser.find_element(By.ID, "context").text
        browser.find_element(By.TAG_NAME, "body").send_keys("t")  # tie
        wait.until(ec.visibility_of_element_located((By.ID, "reveal")))
        assert "Frontier judge (gpt-4o): B" in browser.find_element(By.ID, "verdicts").text
        labels = client.query(f"SELECT id, human_label FROM {settings.clickhouse.database}.gold_labels_latest "
                              "WHERE source = 'annotation:erin'").result_rows
        assert ("pair-disagree", "tie") in labels
    finally:
        page.close()


def test_the_cli_reports_agreement_and_refuses_an_unmigrated_store(seeded, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app

    client, settings, sink = seeded
    items = {i.trace_id: i for i in annotation.next_items(client, settings.clickhouse.database, "ann", limit=10)}
    annotation.record_label(sink, items["low-1"], "ann", "pass")
    annotation.record_label(sink, items["low-1"], "bob", "pass")
    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(settings.stack.state_dir))
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", settings.clickhouse.database)
    result = CliRunner().invoke(app, ["annotate", "--agreement"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["annotators"] == ["ann", "bob"] and report["overall"]["agreement"] == 1.0
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", "not_migrated_db")
    result = CliRunner().invoke(app, ["annotate", "--agreement"])
    assert result.exit_code == 1 and "judgeline migrate" in result.output
