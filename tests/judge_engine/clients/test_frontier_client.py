"""The frontier judge client: recorded verdicts over real HTTP (the replay server as a process, the real openai
client), both orders, honest failures, Retry-After, budget, concurrency and rate limits, and a key that never leaks.
"""

import asyncio
import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from frontier_support import (
    replay_service,
    reset_stats,
    server_stats,
    write_synthetic_gold,
)
from tests_support import SHARED_GOLD

from doubles import frontier_replay
from judge_engine.clients.frontier_client import (
    FrontierJudge,
    SpendBudget,
    disagreement,
    rate_limiter,
)
from judge_engine.clients.frontier_prompt import render
from judge_engine.failures import JitteredWait
from schemas.gold import GoldLabel, read_gold_file
from schemas.settings import FrontierSettings
from schemas.trace import Trace
from schemas.verdict import FrontierRequest, FrontierVerdict, Verdict
from stack import process

FAST = JitteredWait(initial_s=0.001, max_s=0.005)  # so that any longer wait can only come from Retry-After
LLMBAR = SHARED_GOLD / "llmbar-processed.jsonl"
PANDALM = SHARED_GOLD / "pandalm-test.jsonl"
HALUEVAL = SHARED_GOLD / "halueval-general.jsonl"


def _settings(base_url: str, **kw) -> FrontierSettings:
    fields = dict(base_url=base_url, rate_limit_rps=10_000, concurrency=8, max_retries=3, timeout_s=10)
    fields.update(kw)
    return FrontierSettings(**fields)


def _request(item, trace_id=None, reason="low_confidence", inline=None) -> FrontierRequest:
    trace = Trace.from_gold(item, **({"trace_id": trace_id} if trace_id else {}))
    return FrontierRequest(trace=trace, reason=reason, inline_verdict=inline)


def _judge(settings: FrontierSettings, requests, backoff=FAST):
    async def run():
        async with FrontierJudge(settings, backoff=backoff) as judge:
            started = time.monotonic()
            verdicts = await judge.judge_many(requests)
            return verdicts, judge, time.monotonic() - started

    return asyncio.run(run())


def _inline(item: GoldLabel, label: str, trace_id=None) -> Verdict:
    return Verdict(trace_id=trace_id or item.id, app=item.source[:128], kind=item.kind, criterion=item.criterion,
                   label=label, score=0.4, confidence=0.6, judge_name="student", judge_version="v3",
                   latency_ms=12.0, route_reason="low_confidence", trace_time=Trace.from_gold(item).timestamp)


# --- units (no network) ---


def test_rate_limiter_allows_a_burst_then_the_rate():
    async def run():
        limiter = rate_limiter(0.5, burst=3)  # a slot every 2 s: none comes back while the test runs
        free = []
        for _ in range(3):
            free.append(limiter.has_capacity())
            await limiter.acquire()
        free.append(limiter.has_capacity())
        return free

    assert asyncio.run(run()) == [True, True, True, False]
    with pytest.raises(ValueError):
        rate_limiter(0)
    with pytest.raises(ValueError):
        rate_limiter(1.0, burst=0)


def test_rate_limiter_spaces_acquisitions_at_the_rate():
    async def run():
        limiter = rate_limiter(40.0)  # burst 1, as the frontier judge uses it
        started = time.monotonic()
        for _ in range(5):
            await limiter.acquire()
        return time.monotonic() - started

    assert asyncio.run(run()) >= 4 / 40.0 * 0.9  # a lower bound: it holds however busy the machine is


def test_budget_reserves_before_and_settles_after():
    budget = SpendBudget(1.0)
    assert budget.try_reserve(0.6)
    assert not budget.try_reserve(0.5)  # 0.6 reserved + 0.5 > 1.0
    budget.settle(0.6, 0.2)
    assert (budget.spent_usd, budget.reserved_usd) == (0.2, 0.0)
    assert budget.try_reserve(0.8) and not budget.try_reserve(0.01)


def test_an_exhausted_budget_refuses_before_any_call():
    item = GoldLabel(id="x1", source="unit", kind="pointwise", question="q?", answer="a", teacher={})
    settings = _settings(f"http://127.0.0.1:{process.free_port()}/v1", budget_usd=0.0)  # nothing listens there
    (verdict,), judge, _ = _judge(settings, [_request(item)])
    assert verdict.status == "budget_exhausted" and verdict.label is None
    assert (verdict.attempts, verdict.cost_usd, judge.stats.attempts) == (0, 0.0, 0)
    assert "budget" in verdict.error and "JUDGELINE_FRONTIER__BUDGET_USD" in verdict.error


def test_disagreement_only_when_the_frontier_judged_differently():
    item = GoldLabel(id="d1", source="unit", kind="pairwise", question="q?", answer_a="a", answer_b="b")
    inline = _inline(item, "A")
    base = dict(trace_id="d1", app="unit", kind="pairwise", criterion="overall", judge_name="gpt-4",
                request_reason="low_confidence", trace_time=inline.trace_time)
    row = disagreement(inline, FrontierVerdict(label="B", **base))
    assert (row.inline_label, row.frontier_label, row.inline_confidence, row.inline_judge_version,
            row.frontier_judge, row.request_reason) == ("A", "B", 0.6, "v3", "gpt-4", "low_confidence")
    assert disagreement(inline, FrontierVerdict(label="A", **base)) is None
    assert disagreement(inline, FrontierVerdict(status="unparseable", label=None, **base)) is None
    with pytest.raises(ValueError, match="trace_id"):
        disagreement(inline, FrontierVerdict(label="B", **{**base, "trace_id": "other"}))


def test_cost_follows_the_price_settings():
    settings = FrontierSettings(price_per_1k_input_tokens_usd=0.01, price_per_1k_output_tokens_usd=0.03)
    judge = FrontierJudge(settings)
    assert judge.cost_usd(2000, 1000) == pytest.approx(0.05)
    short = judge.estimate_cost_usd(render(Trace(trace_id="t", kind="pointwise", question="q", answer="a")))
    long = judge.estimate_cost_usd(render(Trace(trace_id="t", kind="pointwise", question="q" * 4000, answer="a")))
    assert 0 < short < long and long - short == pytest.approx(0.01, rel=0.01)  # ~1000 more input tokens


class _ScriptedClient:
    """Stands in for AsyncOpenAI: replies by the order the prompt shows (to reach combinations HTTP cannot)."""

    def __init__(self, original: str, swapped: str):
        self.replies = {False: original, True: swapped}
        self.chat = self
        self.completions = self

    async def create(self, *, messages, **_):
        from types import SimpleNamespace

        from judge_engine.clients.frontier_prompt import parse_prompt

        fields = parse_prompt(messages)
        shown_swapped = fields.answers[0] == "second"
        content = self.replies[shown_swapped]
        usage = SimpleNamespace(prompt_tokens=100, completion_tokens=10)
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=content))], usage=usage)

    async def close(self):
        pass


@pytest.mark.parametrize("original,swapped,expected", [
    ("ok.\nVERDICT: A", "hmm, B?", ("ok", "A", None, 0.5, "unparseable")),
    ("I think A.", "VERDICT: A", ("unparseable", None, "B", 0.0, "unparseable")),
    ("fine\nVERDICT: B", "fine\nVERDICT: A", ("ok", "B", "B", 1.0, None)),
    ("fine\nVERDICT: B", "fine\nVERDICT: B", ("ok", "B", "A", 0.5, None)),
])
def test_both_orders_combine_into_one_verdict(original, swapped, expected):
    trace = Trace(trace_id="c1", kind="pairwise", question="q?", answer_a="first", answer_b="second")

    async def run():
        judge = FrontierJudge(FrontierSettings(), client=_ScriptedClient(original, swapped))
        return await judge.judge(FrontierRequest(trace=trace, reason="calibration_sample"))

    v = asyncio.run(run())
    status, label, label_swapped, confidence, error = expected
    assert (v.status, v.label, v.label_swapped, v.confidence) == (status, label, label_swapped, confidence)
    assert (v.attempts, v.input_tokens, v.output_tokens) == (2, 200, 20)
    assert (error in v.error) if error else v.error is None


# --- over HTTP against the replay server ---


@pytest.fixture(scope="module")
def shared_replay(tmp_path_factory):
    if not (LLMBAR.exists() and PANDALM.exists() and HALUEVAL.exists()):
        pytest.skip(f"shared gold sets not found under {SHARED_GOLD}")
    with replay_service(tmp_path_factory.mktemp("replay"), [LLMBAR, PANDALM, HALUEVAL]) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("gold") / "synthetic.jsonl"
    return path, {item.id: item for item in write_synthetic_gold(path)}


def _items(path, n=None, where=lambda item: True):
    out = [item for _, item in read_gold_file(path) if isinstance(item, GoldLabel) and where(item)]
    return out[:n] if n else out


@pytest.mark.integration
def test_recorded_verdicts_in_both_orders(shared_replay):
    conflicted = _items(LLMBAR, 5, lambda i: i.teacher_swapped.get("gpt-4") not in (None, i.teacher.get("gpt-4")))
    items = _items(LLMBAR, 15) + conflicted + _items(PANDALM, 15)
    assert conflicted, "the llmbar set should hold items whose two orders disagree"
    settings = _settings(shared_replay)
    verdicts, judge, _ = _judge(settings, [_request(i) for i in items])
    for item, v in zip(items, verdicts):
        teacher = item.teacher["gpt-4"]
        swapped = item.teacher_swapped.get("gpt-4") or teacher
        assert (v.status, v.label, v.label_swapped) == ("ok", teacher, swapped), item.id
        assert v.confidence == (1.0 if teacher == swapped else 0.5)
        assert v.attempts == 2 and v.input_tokens > 0 and v.output_tokens > 0
        assert v.cost_usd == pytest.approx(v.input_tokens / 1000 * 0.01 + v.output_tokens / 1000 * 0.03)
        assert item.id in v.critique and v.judge_name == "gpt-4" and v.request_reason == "low_confidence"
    assert judge.budget.spent_usd == pytest.approx(sum(v.cost_usd for v in verdicts))
    assert judge.budget.reserved_usd == 0


@pytest.mark.integration
def test_one_order_when_both_orders_are_off(shared_replay):
    items = _items(LLMBAR, 3)
    verdicts, _, _ = _judge(_settings(shared_replay, judge_both_orders=False), [_request(i) for i in items])
    assert [(v.label, v.label_swapped, v.attempts, v.confidence) for v in verdicts] == \
        [(i.teacher["gpt-4"], None, 1, 1.0) for i in items]


@pytest.mark.integration
def test_frontier_verdict_and_disagreement_rows(shared_replay):
    item = _items(PANDALM, 1)[0]
    recorded = item.teacher["gpt-4"]
    other = "B" if recorded == "A" else "A"
    requests = [_request(item, inline=_inline(item, other)), _request(item, inline=_inline(item, recorded))]
    (differs, agrees), _, _ = _judge(_settings(shared_replay), requests)
    assert (differs.inline_label, differs.inline_judge_version) == (other, "v3")
    row = disagreement(requests[0].inline_verdict, differs)
    assert (row.trace_id, row.inline_label, row.frontier_label, row.frontier_judge) == (item.id, other, recorded, "gpt-4")
    assert disagreement(requests[1].inline_verdict, agrees) is None


@pytest.mark.integration
def test_items_sharing_a_prompt_are_told_apart_by_trace_id(shared_replay):
    groups: dict = {}
    for item in _items(PANDALM):
        groups.setdefault((item.question, item.answer_a, item.answer_b), []).append(item)
    clash = next(g for g in groups.values() if len({i.teacher["gpt-4"] for i in g}) > 1)
    requests = [_request(i) for i in clash] + [_request(clash[0], trace_id="not-a-gold-id")]
    verdicts, _, _ = _judge(_settings(shared_replay, judge_both_orders=False), requests)
    assert [v.label for v in verdicts[:-1]] == [i.teacher["gpt-4"] for i in clash]
    assert verdicts[-1].status == "rejected" and "ambiguous" in verdicts[-1].error


@pytest.mark.integration
def test_no_record_is_an_honest_rejection_not_retried(shared_replay):
    unknown = GoldLabel(id="made-up-1", source="test", kind="pairwise", question="A question no gold set has?",
                        answer_a="yes", answer_b="no")
    no_verdict = _items(HALUEVAL, 1)[0]  # pointwise, no recorded teacher verdict
    verdicts, _, _ = _judge(_settings(shared_replay), [_request(unknown), _request(no_verdict)])
    (u, n) = verdicts
    assert (u.status, u.label, u.attempts) == ("rejected", None, 2)  # one attempt per order, no retry
    assert "404" in u.error and "item_not_recorded" in u.error
    assert (n.status, n.attempts) == ("rejected", 1) and "no recorded verdict of gpt-4" in n.error
    (m,), _, _ = _judge(_settings(shared_replay, model="gpt-5"), [_request(no_verdict)])
    assert m.status == "rejected" and "model_not_found" in m.error


@pytest.mark.integration
def test_a_verdict_recorded_in_the_swapped_order_only(tmp_path, synthetic):
    path, items = synthetic
    item = items["syn-pair-4"]  # no verdict in the original order; the swapped-order verdict is kept
    with replay_service(tmp_path, [path]) as (base_url, _):
        (v,), _, _ = _judge(_settings(base_url), [_request(item)])
    assert (v.status, v.label, v.label_swapped, v.attempts) == ("rejected", None, item.teacher_swapped["gpt-4"], 2)
    assert "verdict_not_recorded" in v.error


@pytest.mark.integration
def test_429_is_retried_after_retry_after_then_succeeds(tmp_path, synthetic):
    path, items = synthetic
    faults = frontier_replay.Faults(rate_limit_fraction=0.5, retry_after_s=0.7)
    with replay_service(tmp_path, [path], faults=faults) as (base_url, _):
        (v,), _, elapsed = _judge(_settings(base_url), [_request(items["syn-point-1"])])
        assert (v.status, v.label, v.attempts) == ("ok", "pass", 2)
        assert elapsed >= 0.7  # the backoff alone would have waited at most 5 ms
        assert server_stats(base_url)["injected_429"] == 1


@pytest.mark.integration
def test_500_is_retried(tmp_path, synthetic):
    path, items = synthetic
    faults = frontier_replay.Faults(server_error_fraction=0.5)
    with replay_service(tmp_path, [path], faults=faults) as (base_url, _):
        verdicts, _, _ = _judge(_settings(base_url, concurrency=1), [_request(items["syn-pair-2"])])
        v = verdicts[0]
        assert (v.status, v.label, v.label_swapped, v.confidence) == ("ok", "A", "B", 0.5)
        assert v.attempts == 4 and server_stats(base_url)["injected_500"] == 2


@pytest.mark.integration
def test_always_429_records_retries_exhausted(tmp_path, synthetic):
    path, items = synthetic
    faults = frontier_replay.Faults(rate_limit_fraction=1.0, retry_after_s=0.05)
    with replay_service(tmp_path, [path], faults=faults) as (base_url, _):
        (v,), _, _ = _judge(_settings(base_url, max_retries=2), [_request(items["syn-point-2"])])
        assert (v.status, v.label, v.attempts, v.cost_usd, v.confidence) == ("retries_exhausted", None, 3, 0.0, 0.0)
        assert "gave up after 3 attempts" in v.error and "429" in v.error
        assert server_stats(base_url)["requests"] == 3


@pytest.mark.integration
def test_budget_runs_out_and_is_recorded(tmp_path, synthetic):
    path, items = synthetic
    first, second = _request(items["syn-point-1"]), _request(items["syn-point-2"])
    with replay_service(tmp_path, [path]) as (base_url, _):
        probe = FrontierJudge(_settings(base_url))
        one_item = probe.estimate_cost_usd(render(first.trace))
        asyncio.run(probe.aclose())
        settings = _settings(base_url, budget_usd=one_item * 1.01, concurrency=1)

        async def run():
            async with FrontierJudge(settings, backoff=FAST) as judge:
                return await judge.judge(first), await judge.judge(second), judge

        a, b, judge = asyncio.run(run())
        assert a.status == "ok" and 0 < a.cost_usd < one_item
        assert (b.status, b.label, b.attempts, b.cost_usd) == ("budget_exhausted", None, 0, 0.0)
        assert "budget exhausted" in b.error
        assert judge.budget.spent_usd == pytest.approx(a.cost_usd)
        assert server_stats(base_url)["requests"] == 1  # refused before the call


@pytest.fixture(scope="module")
def slow_replay(tmp_path_factory, synthetic):
    path, _ = synthetic
    with replay_service(tmp_path_factory.mktemp("slow"), [path],
                        faults=frontier_replay.Faults(latency_ms=250)) as (base_url, _):
        yield base_url


@pytest.mark.integration
def test_concurrency_bound_is_observed_by_the_server(slow_replay, synthetic):
    _, items = synthetic
    reset_stats(slow_replay)
    requests = [_request(items[i], trace_id=f"{i}-{n}") for n in range(3) for i in ("syn-point-1", "syn-point-2")]
    verdicts, judge, elapsed = _judge(_settings(slow_replay, concurrency=2), requests)
    assert {v.status for v in verdicts} == {"ok"}
    assert server_stats(slow_replay)["max_in_flight"] == 2 and judge.stats.max_in_flight == 2
    assert elapsed >= 3 * 0.25


@pytest.mark.integration
def test_rate_limit_spaces_the_requests(slow_replay, synthetic):
    _, items = synthetic
    reset_stats(slow_replay)
    requests = [_request(items["syn-pair-1"], trace_id=f"r{n}") for n in range(3)]  # 6 calls, both orders
    verdicts, _, elapsed = _judge(_settings(slow_replay, rate_limit_rps=4.0), requests)
    assert {v.status for v in verdicts} == {"ok"}
    arrivals = server_stats(slow_replay)["arrivals_s"]
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 5 / 4.0 * 0.9  # 6 requests at 4 per second: at least 1.25 s apart
    assert elapsed >= 5 / 4.0


@pytest.mark.integration
def test_a_timeout_is_transient_and_retried(slow_replay, synthetic):
    _, items = synthetic
    (v,), _, _ = _judge(_settings(slow_replay, timeout_s=0.05, max_retries=1), [_request(items["syn-point-1"])])
    assert (v.status, v.attempts) == ("retries_exhausted", 2) and "Timeout" in v.error


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A hostile server that echoes the bearer token in its 401 error, as some providers do."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error",
                                     "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.integration
def test_the_api_key_never_appears_in_logs_errors_or_records(tmp_path, synthetic, caplog):
    path, items = synthetic
    key = f"sk-judgeline-test-{uuid.uuid4().hex}"
    caplog.set_level(logging.DEBUG)
    records: list[str] = []
    unknown = GoldLabel(id="made-up-2", source="test", kind="pointwise", question="nobody asked?", answer="x")
    faults = frontier_replay.Faults(rate_limit_fraction=0.5, retry_after_s=0.05)
    with replay_service(tmp_path, [path], faults=faults, log_level="DEBUG") as (base_url, record):
        settings = _settings(base_url, api_key=key, max_retries=3)
        verdicts, judge, _ = _judge(settings, [_request(items["syn-point-1"]), _request(unknown),
                                               _request(items["syn-point-3"])])
        assert [v.status for v in verdicts] == ["ok", "rejected", "rejected"]
        assert server_stats(base_url)["injected_429"] >= 1  # retries were logged too
        (exhausted,), _, _ = _judge(_settings(base_url, api_key=key, budget_usd=0.0), [_request(unknown)])
        records += [v.model_dump_json() for v in verdicts + [exhausted]]
        records += [repr(judge), repr(settings), str(settings.model_dump())]
        server_log = open(record.log).read()
    echo = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    try:
        hostile = _settings(f"http://127.0.0.1:{echo.server_address[1]}/v1", api_key=key)
        (echoed,), _, _ = _judge(hostile, [_request(unknown)])
    finally:
        echo.shutdown()
        echo.server_close()
    assert echoed.status == "rejected" and "Incorrect API key provided: **********" in echoed.error
    records.append(echoed.model_dump_json())
    assert caplog.records, "the client should have logged its retries and rejections"
    for text in records + [caplog.text, server_log]:
        assert key not in text
        assert key[len("sk-judgeline-test-"):] not in text
