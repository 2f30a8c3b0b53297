"""The replay server as a real process, called by the real openai client: recorded verdicts in both orders,
usage estimates, honest errors, deterministic 429/500 injection with Retry-After, latency, the CLI command."""

import asyncio
import json
import math
import sys
import time
import urllib.request
import uuid
from fractions import Fraction

import openai
import pytest
from conftest import make_settings
from frontier_support import (
    SYNTHETIC_ITEMS,
    replay_service,
    server_stats,
    write_synthetic_gold,
)
from tests_support import REPO_ROOT, SHARED_GOLD

from doubles import frontier_replay
from judge_engine.clients.frontier_prompt import estimate_tokens, parse_reply, render
from schemas.base import SWAPPED_LABEL
from schemas.gold import GoldLabel, read_gold_file
from schemas.trace import Trace
from stack import process

LLMBAR = SHARED_GOLD / "llmbar-processed.jsonl"


def _client(base_url: str, key: str = "test-key") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)


def _ask(client, item, swapped=False, model="gpt-4", trace_id=None):
    messages = render(Trace.from_gold(item), swapped=swapped)
    headers = {"X-Judgeline-Trace-Id": trace_id} if trace_id else None
    return client.chat.completions.create(model=model, messages=messages, extra_headers=headers), messages


def _label(response, kind):
    parsed = parse_reply(kind, response.choices[0].message.content)
    assert parsed.error is None, parsed.error
    return parsed.label


# --- units ---


@pytest.mark.parametrize("fraction", [0.1, 0.25, 1 / 3, 0.5, 0.7, 1.0])
def test_fault_injection_hits_exactly_a_fraction_starting_with_the_first(fraction):
    f = Fraction(fraction).limit_denominator(10**6)
    hits = [n for n in range(1, 301) if frontier_replay._every(f, n)]
    assert hits[0] == 1
    assert len(hits) == math.ceil(300 * f)


def test_index_covers_both_orders_and_maps_the_swapped_verdict(tmp_path):
    items = {i.id: i for i in write_synthetic_gold(tmp_path / "g.jsonl")}
    index = frontier_replay.load_index([tmp_path / "g.jsonl"])
    pair = items["syn-pair-2"]  # teacher A, teacher_swapped B (mapped back): shown swapped, B means answer_a
    swapped_key = frontier_replay.prompt_key("pairwise", "overall", pair.question, (pair.answer_b, pair.answer_a))
    (entry,) = index.entries[swapped_key]
    assert entry.swapped and entry.label("gpt-4") == SWAPPED_LABEL[pair.teacher_swapped["gpt-4"]]
    assert index.items == len(items) and index.bad_lines == 0


def test_serve_refuses_a_non_loopback_address(tmp_path):
    write_synthetic_gold(tmp_path / "g.jsonl")
    with pytest.raises(SystemExit, match="loopback"):
        frontier_replay.serve([tmp_path / "g.jsonl"], "0.0.0.0", 0)


def _in_process(tmp_path, requests):
    """Run ``requests(client)`` against two replay apps in this process (aiohttp's test server, no network)."""
    from aiohttp.test_utils import TestClient, TestServer

    write_synthetic_gold(tmp_path / "g.jsonl")
    index = frontier_replay.load_index([tmp_path / "g.jsonl"])

    async def run():
        first = TestClient(TestServer(frontier_replay.app(frontier_replay.Replay(index, ["gpt-4"]))))
        second = TestClient(TestServer(frontier_replay.app(frontier_replay.Replay(index, ["gpt-4"]))))
        async with first, second:
            return await requests(first, second)

    return asyncio.run(run())


def test_errors_are_openai_json_and_servers_share_no_state(tmp_path):
    async def requests(first, second):
        too_big = await first.post("/v1/chat/completions", data=b"x" * (frontier_replay.MAX_BODY_BYTES + 1))
        not_json = await first.post("/v1/chat/completions", data=b"{not json")
        unknown = await first.get("/v1/nothing-here")
        return ((too_big.status, await too_big.json()), (not_json.status, await not_json.json()),
                (unknown.status, await unknown.json()), await (await first.get("/stats")).json(),
                await (await second.get("/stats")).json())

    too_big, not_json, unknown, first, second = _in_process(tmp_path, requests)
    assert too_big[0] == 413 and too_big[1]["error"]["code"] == "body_too_large"
    assert not_json[0] == 400 and not_json[1]["error"]["code"] == "invalid_json"
    assert unknown[0] == 404 and unknown[1]["error"]["code"] == "not_found"
    assert (first["requests"], first["errors"]) == (1, 1)  # the oversized body never became a request
    assert (second["requests"], second["errors"]) == (0, 0)


def test_faults_are_validated():
    with pytest.raises(ValueError, match="rate_limit_fraction"):
        frontier_replay.Faults(rate_limit_fraction=1.5)


# --- the server as a process ---


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("gold") / "synthetic.jsonl"
    return path, {item.id: item for item in write_synthetic_gold(path)}


@pytest.fixture(scope="module")
def replay(tmp_path_factory, synthetic):
    path, _ = synthetic
    with replay_service(tmp_path_factory.mktemp("replay"), [path], log_level="DEBUG") as (base_url, record):
        yield base_url, record


@pytest.mark.integration
def test_health_and_models(replay):
    base_url, record = replay
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/health", timeout=5) as r:
        assert json.loads(r.read())["items"] == len(SYNTHETIC_ITEMS)
    assert [m.id for m in _client(base_url).models.list()] == ["gpt-4"]
    assert process.is_running(record)


@pytest.mark.integration
def test_recorded_verdicts_in_both_orders_with_estimated_usage(replay, synthetic):
    base_url, _ = replay
    _, items = synthetic
    client = _client(base_url)
    for item in (i for i in items.values() if i.kind == "pairwise" and i.teacher):
        response, messages = _ask(client, item)
        assert _label(response, "pairwise") == item.teacher["gpt-4"]
        assert response.usage.prompt_tokens == sum(estimate_tokens(m["content"]) for m in messages)
        assert response.usage.completion_tokens == estimate_tokens(response.choices[0].message.content)
        swapped, _ = _ask(client, item, swapped=True)
        recorded = item.teacher_swapped.get("gpt-4") or item.teacher["gpt-4"]  # mapped back to the original order
        assert _label(swapped, "pairwise") == SWAPPED_LABEL[recorded]  # ... and shown in the swapped order
    pointwise, _ = _ask(client, items["syn-point-2"])
    assert _label(pointwise, "pointwise") == items["syn-point-2"].teacher["gpt-4"]


@pytest.mark.integration
def test_shared_gold_items_are_replayed(tmp_path):
    if not LLMBAR.exists():
        pytest.skip(f"{LLMBAR} not found")
    items = [i for _, i in read_gold_file(LLMBAR)
             if isinstance(i, GoldLabel) and i.teacher.get("gpt-4") and i.teacher_swapped.get("gpt-4")]
    sample = items[:10] + [i for i in items if i.teacher_swapped["gpt-4"] != i.teacher["gpt-4"]][:5]
    with replay_service(tmp_path, [LLMBAR]) as (base_url, _):
        client = _client(base_url)
        for item in sample:
            assert _label(_ask(client, item)[0], "pairwise") == item.teacher["gpt-4"]
            shown = _label(_ask(client, item, swapped=True)[0], "pairwise")
            assert SWAPPED_LABEL[shown] == item.teacher_swapped["gpt-4"]


@pytest.mark.integration
def test_honest_errors(replay, synthetic):
    base_url, _ = replay
    _, items = synthetic
    client = _client(base_url)
    made_up = GoldLabel(id="nope", source="t", kind="pairwise", question="never recorded?", answer_a="x", answer_b="y")
    with pytest.raises(openai.NotFoundError) as e:
        _ask(client, made_up)
    assert e.value.code == "item_not_recorded" and e.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as e:
        _ask(client, items["syn-point-3"])  # recorded for gpt-3.5-turbo only
    assert e.value.code == "verdict_not_recorded" and "no recorded verdict of gpt-4" in e.value.message
    with pytest.raises(openai.NotFoundError) as e:
        _ask(client, items["syn-point-1"], model="gpt-4o")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "Is A better than B?"}])
    assert e.value.code == "not_a_judgeline_prompt"
    edited = render(Trace.from_gold(items["syn-point-1"]))
    edited[1]["content"] = edited[1]["content"].replace("Shakespeare", "Marlowe")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4", messages=edited)


@pytest.mark.integration
def test_injected_429_and_500_follow_the_fraction_with_retry_after(tmp_path, synthetic):
    path, items = synthetic
    faults = frontier_replay.Faults(rate_limit_fraction=0.5, server_error_fraction=0.5, retry_after_s=1.5)
    with replay_service(tmp_path, [path], faults=faults) as (base_url, _):
        client = _client(base_url)
        outcomes = []
        for _ in range(8):
            try:
                _ask(client, items["syn-point-1"])
                outcomes.append("ok")
            except openai.RateLimitError as e:
                assert e.response.headers["retry-after"] == "2" and e.response.headers["retry-after-ms"] == "1500"
                outcomes.append(429)
            except openai.InternalServerError:
                outcomes.append(500)
        # 429 on odd requests; among the rest, 500 on every other one (the first included)
        assert outcomes == [429, 500, 429, "ok", 429, 500, 429, "ok"]
        assert {k: server_stats(base_url)[k] for k in ("injected_429", "injected_500", "answered")} == \
            {"injected_429": 4, "injected_500": 2, "answered": 2}


@pytest.mark.integration
def test_latency_is_added(tmp_path, synthetic):
    path, items = synthetic
    faults = frontier_replay.Faults(latency_ms=300, jitter_ms=100)
    with replay_service(tmp_path, [path], faults=faults) as (base_url, _):
        client = _client(base_url)
        started = time.monotonic()
        _ask(client, items["syn-point-1"])
        assert time.monotonic() - started >= 0.3


@pytest.mark.integration
def test_the_server_never_logs_the_api_key(tmp_path, synthetic):
    path, items = synthetic
    key = f"sk-replay-{uuid.uuid4().hex}"
    with replay_service(tmp_path, [path], log_level="DEBUG") as (base_url, record):
        client = _client(base_url, key)
        _ask(client, items["syn-point-1"])
        with pytest.raises(openai.NotFoundError):
            _ask(client, items["syn-point-3"])
        log = open(record.log).read()
    assert "POST /v1/chat/completions" in log  # it does log requests at DEBUG ...
    assert key not in log  # ... but never their headers


@pytest.mark.integration
def test_cli_command_serves(tmp_path, synthetic):
    path, items = synthetic
    settings = make_settings(stack={"state_dir": tmp_path})
    port = process.free_port()
    command = [sys.executable, "-m", "cli.main", "frontier-replay", "--gold", str(path), "--port", str(port)]
    record = process.start("cli-replay", command, tmp_path, cwd=REPO_ROOT, ports={"http": port},
                           env={"JUDGELINE_STACK__STATE_DIR": str(tmp_path)})
    try:
        process.wait_healthy(record, lambda: frontier_replay.healthy(settings, record), timeout_s=60)
        response, _ = _ask(_client(f"http://127.0.0.1:{port}/v1"), items["syn-pair-3"])
        assert _label(response, "pairwise") == items["syn-pair-3"].teacher["gpt-4"]
    finally:
        process.stop(record)


def test_stats_count_the_calls_of_each_trace_and_reset_zeroes_them():
    replay = frontier_replay.Replay(frontier_replay.Index(), ["gpt-4"])
    for trace_id in ("t-1", "t-2", "t-1", None):
        replay.begin(trace_id)
    stats = replay.stats()
    assert (stats["requests"], stats["by_trace"]) == (4, {"t-1": 2, "t-2": 1})  # a call without the header: counted once
    replay.reset()
    assert replay.stats()["by_trace"] == {}
