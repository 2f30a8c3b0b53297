"""The failure policy: real library errors classified, backoff honours Retry-After, permanent errors never retried."""

import asyncio
import random
import sys
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
import tenacity

from judge_engine.failures import (
    GaveUp,
    JitteredWait,
    classify,
    retry_after,
    retrying,
    retrying_sync,
)
from schemas.base import InvalidMessage


def _openai_error(cls_name: str, status: int, headers=None):
    import openai

    try:
        import httpx2 as httpx
    except ImportError:  # older openai releases use httpx
        import httpx
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    return getattr(openai, cls_name)("boom", response=response, body=None)


def test_openai_errors():
    assert classify(_openai_error("RateLimitError", 429)) == "transient"
    assert classify(_openai_error("InternalServerError", 503)) == "transient"
    assert classify(_openai_error("BadRequestError", 400)) == "permanent"
    assert classify(_openai_error("AuthenticationError", 401)) == "permanent"


def test_kafka_errors():
    from confluent_kafka import KafkaError, KafkaException

    assert classify(KafkaException(KafkaError(KafkaError._TRANSPORT))) == "transient"
    assert classify(KafkaException(KafkaError(KafkaError._ALL_BROKERS_DOWN))) == "transient"
    assert classify(KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))) == "permanent"


def test_triton_errors():
    from tritonclient.utils import InferenceServerException

    assert classify(InferenceServerException("down", status="StatusCode.UNAVAILABLE")) == "transient"
    assert classify(InferenceServerException("slow", status="StatusCode.DEADLINE_EXCEEDED")) == "transient"
    assert classify(InferenceServerException("bad shape", status="StatusCode.INVALID_ARGUMENT")) == "permanent"
    assert classify(InferenceServerException("http", status="503")) == "transient"


def test_clickhouse_errors():
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    assert classify(OperationalError("connection refused")) == "transient"
    overloaded = DatabaseError("too many parts")
    overloaded.code = 252
    syntax = DatabaseError("syntax error")
    syntax.code = 62
    assert (classify(overloaded), classify(syntax)) == ("transient", "permanent")


def test_plain_python_errors():
    assert classify(TimeoutError()) == "transient"
    assert classify(ConnectionRefusedError()) == "transient"
    assert classify(InvalidMessage("Trace", "answer: missing")) == "permanent"
    assert classify(ValueError("bad")) == "permanent"
    assert classify(RuntimeError("who knows")) == "transient"  # unknown: stall visibly, lose nothing


def test_retry_after_seconds_and_http_date():
    assert retry_after(_openai_error("RateLimitError", 429, {"retry-after": "7"})) == 7.0
    assert retry_after(_openai_error("RateLimitError", 429, {"retry-after-ms": "250"})) == 0.25
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after(_openai_error("RateLimitError", 429, {"retry-after": when})) <= 31
    assert retry_after(TimeoutError()) is None


def _failed_attempt(number: int, exc: BaseException) -> tenacity.RetryCallState:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = number
    try:
        raise exc
    except BaseException:
        state.set_exception(sys.exc_info())
    return state


def test_backoff_grows_with_jitter_and_respects_retry_after():
    wait = JitteredWait(initial_s=0.1, max_s=2.0)
    random.seed(1)
    delays = {n: [wait(_failed_attempt(n, TimeoutError())) for _ in range(50)] for n in range(1, 9)}
    for n, ds in delays.items():
        cap = min(2.0, 0.1 * 2 ** (n - 1))
        assert all(0 <= d <= cap for d in ds) and max(ds) > cap / 2  # full jitter up to the cap
    assert wait(_failed_attempt(1, _openai_error("RateLimitError", 429, {"retry-after": "3"}))) >= 3.0
    hour = _openai_error("RateLimitError", 429, {"retry-after": "3600"})
    assert wait(_failed_attempt(1, hour)) == wait.max_retry_after_s


def test_transient_errors_are_retried_until_success():
    calls, sleeps = [], []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("slow")
        return "ok"

    async def fake_sleep(s):
        sleeps.append(s)

    assert asyncio.run(retrying(what="judge", attempts=5, sleep=fake_sleep)(flaky)) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2


def test_permanent_errors_are_raised_at_once():
    calls = []

    def bad():
        calls.append(1)
        raise InvalidMessage("Trace", "question: required field is missing; add it")

    with pytest.raises(InvalidMessage):
        retrying_sync(what="parse", attempts=5, sleep=lambda s: None)(bad)
    assert len(calls) == 1


def test_giving_up_reports_attempts_and_last_error():
    seen = []

    def down():
        raise ConnectionRefusedError("store down")

    with pytest.raises(GaveUp) as e:
        retrying_sync(what="store insert", attempts=4, sleep=lambda s: None,
                      on_retry=lambda n, exc, pause: seen.append(n))(down)
    assert e.value.attempts == 4 and isinstance(e.value.last, ConnectionRefusedError)
    assert "store insert: gave up after 4 attempts" in str(e.value) and seen == [1, 2, 3]
    with pytest.raises(ValueError):
        retrying_sync(what="x", attempts=0)
