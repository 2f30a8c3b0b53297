"""The failure policy of judgeline, in one place: classify an error, retry the transient ones with backoff.

Contract:
- ``classify(exc)`` returns ``"permanent"`` for bad input (validation errors, ``ValueError``/``TypeError``,
  HTTP 4xx other than 408/429, ClickHouse syntax/type errors, gRPC INVALID_ARGUMENT...) and ``"transient"`` for
  everything that may pass by itself: timeouts, connection failures, HTTP 408/429/5xx, Kafka errors librdkafka
  marks retriable, ClickHouse network/overload codes, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED. A
  ClickHouse error code is read from the error (clickhouse-connect keeps it only in the text: ``Code: N``).
- An error it does not recognise is transient: retrying it stalls the pipeline visibly and loses nothing, while
  treating an unknown outage as bad input would dead-letter good traffic.
- ``retry_after(exc)`` reads a server's ``Retry-After`` hint (seconds or HTTP date) when the error carries one.
- Retrying is tenacity's, with this policy's two pieces: ``transient`` (the retry predicate: ``classify(exc) ==
  "transient"``) and ``JitteredWait`` (exponential backoff with full jitter, tenacity's ``wait_random_exponential``,
  never shorter than the server's ``Retry-After``, capped at ``max_retry_after_s``). ``retrying(what=, attempts=)``
  (async) and ``retrying_sync`` build a fresh tenacity retryer per call (``await retrying(...)(fn)``): a permanent
  error is re-raised at once, a transient one retried, and ``GaveUp`` (with the attempts made and the last error)
  raised when the attempts run out. Callers decide what giving up means: the frontier worker records it, the sinks
  stop consuming, the inline agent applies its routing policy.
- The client libraries are recognised by duck typing, so this module imports none of them.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from typing import Awaitable, Callable, Literal

import tenacity

Kind = Literal["transient", "permanent"]

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


_CLICKHOUSE_CODE = re.compile(r"(?:\bCode:|error code)\s*(\d+)")


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
    if "DatabaseError" in names and not isinstance(ch_code, int):  # clickhouse-connect puts the code in the text
        found = _CLICKHOUSE_CODE.search(str(exc))
        ch_code = int(found.group(1)) if found else None
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


def transient(exc: BaseException) -> bool:
    """The retry predicate of every retryer: the one classification."""
    return classify(exc) == "transient"


class JitteredWait(tenacity.wait.wait_base):
    """Full-jitter exponential backoff (uniform in [0, min(max_s, initial_s * 2**(n-1))] before retry n), never
    shorter than the server's ``Retry-After`` (honoured up to ``max_retry_after_s``)."""

    def __init__(self, initial_s: float = 0.1, max_s: float = 10.0, max_retry_after_s: float = 60.0):
        self.initial_s, self.max_s, self.max_retry_after_s = initial_s, max_s, max_retry_after_s
        self._jitter = tenacity.wait_random_exponential(multiplier=initial_s, max=max_s)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        jittered = self._jitter(retry_state)
        outcome = retry_state.outcome
        hinted = retry_after(outcome.exception()) if outcome is not None and outcome.failed else None
        return max(jittered, min(hinted, self.max_retry_after_s)) if hinted is not None else jittered


def _policy(what: str, attempts: int, wait: JitteredWait | None,
            on_retry: Callable[[int, BaseException, float], None] | None) -> dict:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")

    def give_up(state: tenacity.RetryCallState):
        last = state.outcome.exception()
        raise GaveUp(what, state.attempt_number, last) from last

    def before_sleep(state: tenacity.RetryCallState) -> None:
        on_retry(state.attempt_number, state.outcome.exception(), state.next_action.sleep)

    return {"retry": tenacity.retry_if_exception(transient), "stop": tenacity.stop_after_attempt(attempts),
            "wait": wait or JitteredWait(), "retry_error_callback": give_up,
            "before_sleep": before_sleep if on_retry else None}


def retrying(*, what: str, attempts: int, wait: JitteredWait | None = None,
             on_retry: Callable[[int, BaseException, float], None] | None = None,
             sleep: Callable[[float], Awaitable[None]] | None = None) -> tenacity.AsyncRetrying:
    """A fresh async retryer for one call (a retryer keeps per-call state, so never share one between calls); call
    it with a coroutine function: ``await retrying(...)(fn, *args)``."""
    return tenacity.AsyncRetrying(**_policy(what, attempts, wait, on_retry), **({"sleep": sleep} if sleep else {}))


def retrying_sync(*, what: str, attempts: int, wait: JitteredWait | None = None,
                  on_retry: Callable[[int, BaseException, float], None] | None = None,
                  sleep: Callable[[float], None] | None = None) -> tenacity.Retrying:
    return tenacity.Retrying(**_policy(what, attempts, wait, on_retry), **({"sleep": sleep} if sleep else {}))
