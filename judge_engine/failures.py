"""The failure policy of judgeline, in one place: classify an error, retry the transient ones with backoff.

Contract:
- ``classify(exc)`` returns ``"permanent"`` for bad input (validation errors, ``ValueError``/``TypeError``,
  HTTP 4xx other than 408/429, ClickHouse syntax/type errors, gRPC INVALID_ARGUMENT...) and ``"transient"`` for
  everything that may pass by itself: timeouts, connection failures, HTTP 408/429/5xx, Kafka errors librdkafka
  marks retriable, ClickHouse network/overload codes, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED.
- An error it does not recognise is transient: retrying it stalls the pipeline visibly and loses nothing, while
  treating an unknown outage as bad input would dead-letter good traffic.
- ``retry_after(exc)`` reads a server's ``Retry-After`` hint (seconds or HTTP date) when the error carries one.
- ``call_with_retries`` (async) and ``call_with_retries_sync`` run a call, re-raise a permanent error at once,
  retry a transient one with exponential backoff and full jitter (never sooner than ``Retry-After``), and raise
  ``GaveUp`` (with the attempts made and the last error) when the attempts run out. Callers decide what giving up
  means: the frontier worker records it, the sinks stop consuming, the inline agent applies its routing policy.
- Libraries are recognised by duck typing, so this module imports none of them.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Literal, TypeVar

Kind = Literal["transient", "permanent"]
T = TypeVar("T")

TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
TRANSIENT_GRPC = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "CANCELLED"})
PERMANENT_GRPC = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "UNIMPLEMENTED",
                            "PERMISSION_DENIED", "UNAUTHENTICATED", "OUT_OF_RANGE", "ALREADY_EXISTS"})
# ClickHouse error codes that pass by themselves (network, timeouts, overload, replicas, read-only while starting)
TRANSIENT_CLICKHOUSE = frozenset({3, 159, 164, 202, 203, 209, 210, 241, 242, 252, 285, 319, 425, 999, 1000})
PERMANENT_NAMES = frozenset({"ValidationError", "InvalidMessage", "JSONDecodeError", "UnicodeDecodeError",
                             "BadRequestError", "UnprocessableEntityError", "NotFoundError", "AuthenticationError",
                             "PermissionDeniedError", "ProgrammingError"})
TRANSIENT_NAMES = frozenset({"APITimeoutError", "APIConnectionError", "RateLimitError", "InternalServerError",
                             "TimeoutException", "ConnectError", "ReadTimeout", "ConnectTimeout", "RemoteProtocolError",
                             "OperationalError", "StreamFailureError"})


class GaveUp(RuntimeError):
    """A transient error outlasted the retries; ``last`` is the final error, ``attempts`` how many were made."""

    def __init__(self, what: str, attempts: int, last: BaseException):
        super().__init__(f"{what}: gave up after {attempts} attempts; last error: {describe(last)}")
        self.attempts = attempts
        self.last = last


def describe(exc: BaseException) -> str:
    """A one-line description, never longer than 500 characters (it may be stored with a dead letter)."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 500 else text[:497] + "..."


def _status_code(exc: BaseException) -> int | None:
    for candidate in (getattr(exc, "status_code", None), getattr(getattr(exc, "response", None), "status_code", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def _grpc_status(exc: BaseException) -> str | None:
    status = getattr(exc, "status", None)
    value = status() if callable(status) else status
    if value is None and callable(getattr(exc, "code", None)):
        try:
            value = exc.code()
        except Exception:
            value = None
    if value is None:
        return None
    text = str(getattr(value, "name", value))
    return text.rsplit(".", 1)[-1].upper()


def classify(exc: BaseException) -> Kind:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & PERMANENT_NAMES:
        return "permanent"
    if names & TRANSIENT_NAMES and "DatabaseError" not in names:
        return "transient"
    code = _status_code(exc)
    if code is not None:
        return "transient" if code in TRANSIENT_HTTP or code >= 500 else "permanent"
    if "KafkaException" in names or "KafkaError" in names:
        err = exc.args[0] if exc.args and hasattr(exc.args[0], "retriable") else exc
        retriable = getattr(err, "retriable", None)
        if callable(retriable):
            fatal = getattr(err, "fatal", lambda: False)()
            return "transient" if retriable() or not fatal and _kafka_unavailable(err) else "permanent"
    grpc = _grpc_status(exc)
    if grpc in TRANSIENT_GRPC:
        return "transient"
    if grpc in PERMANENT_GRPC:
        return "permanent"
    ch_code = getattr(exc, "code", None)
    if "DatabaseError" in names and isinstance(ch_code, int):
        return "transient" if ch_code in TRANSIENT_CLICKHOUSE else "permanent"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError)):
        return "transient"
    if isinstance(exc, (ValueError, TypeError, KeyError, UnicodeError)):
        return "permanent"
    return "transient"


def _kafka_unavailable(err: object) -> bool:
    name = str(getattr(err, "name", lambda: "")())
    return any(s in name for s in ("TRANSPORT", "TIMED_OUT", "ALL_BROKERS_DOWN", "NOT_COORDINATOR", "LEADER"))


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``Retry-After``, or ``retry-after-ms``), if the error carries it."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.1
    max_s: float = 10.0
    multiplier: float = 2.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, exc: BaseException | None = None, rng: random.Random | None = None) -> float:
        """Full-jitter exponential delay before retry number ``attempt`` (1-based), at least Retry-After."""
        cap = min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1))
        jittered = (rng or random).uniform(0, cap)
        hinted = retry_after(exc) if exc is not None else None
        return max(jittered, min(hinted, self.max_retry_after_s)) if hinted is not None else jittered


def _pause_or_raise(what: str, attempt: int, attempts: int, exc: Exception, backoff: Backoff,
                    on_retry: Callable[[int, BaseException, float], None] | None) -> float:
    """The decision after a failed attempt: re-raise (permanent), give up (out of attempts), or wait this long."""
    if classify(exc) == "permanent":
        raise exc
    if attempt >= attempts:
        raise GaveUp(what, attempt, exc) from exc
    pause = backoff.delay(attempt, exc)
    if on_retry:
        on_retry(attempt, exc, pause)
    return pause


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except Exception as exc:
            await sleep(_pause_or_raise(what, attempt, attempts, exc, backoff, on_retry))


def call_with_retries_sync(
    fn: Callable[[], T],
    *,
    what: str,
    attempts: int,
    backoff: Backoff = Backoff(),
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            sleep(_pause_or_raise(what, attempt, attempts, exc, backoff, on_retry))
