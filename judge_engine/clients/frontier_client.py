"""The frontier judge client: one ``FrontierRequest`` in, one ``FrontierVerdict`` out, over any OpenAI-compatible
endpoint (``openai.AsyncOpenAI``), within the limits of ``settings.frontier``. No Kafka, no storage here.

Contract:
- ``FrontierJudge(settings.frontier).judge(request)`` always returns a ``FrontierVerdict``; a judgement that could
  not be obtained is a verdict whose ``status`` says why and whose ``error`` says what happened:
  ``budget_exhausted`` (refused before any call), ``retries_exhausted`` (transient errors outlasted the retries),
  ``rejected`` (a permanent error such as a 4xx other than 408/429: retrying cannot help), ``unparseable`` (the
  reply is not in the format of ``judge_engine.clients.frontier_prompt``). Only cancellation propagates.
- Prompts and reply parsing are those of ``judge_engine.clients.frontier_prompt``. Pairwise items are judged in both answer
  orders when ``judge_both_orders`` (the two calls run concurrently): ``label`` is the verdict in the original
  order, ``label_swapped`` the swapped-order verdict mapped back to the original order, ``confidence`` 1.0 when
  they agree and 0.5 when they conflict. When only the original order yields a label the verdict is ok with
  ``label_swapped`` empty, confidence 0.5 (unconfirmed) and ``error`` naming the swapped order's failure; when the
  original order fails the verdict takes its status (a swapped-order label is still kept in ``label_swapped``).
  A single-order verdict (pointwise, or both orders off) has confidence 1.0. Every non-ok verdict has confidence 0.
- Limits: at most ``concurrency`` HTTP requests in flight (a semaphore, held per attempt, not during backoff);
  attempts start no faster than ``rate_limit_rps`` (``rate_limiter``: aiolimiter's ``AsyncLimiter``, burst 1, every
  attempt and retry takes a slot); retries only through ``judge_engine.failures.retrying`` (tenacity; ``max_retries``
  retries after the first attempt, jittered exponential backoff, never sooner than the server's Retry-After); the
  openai client's own retries are off; each attempt times out after ``timeout_s``.
- Spend: tokens come from the response's ``usage`` (an estimate when a server sends none) and cost from the price
  settings. Before an item is sent its worst case is reserved: the input estimated at ceil(prompt characters / 4)
  tokens plus ``MESSAGE_OVERHEAD_TOKENS`` per message, the output at ``MAX_REPLY_TOKENS`` (the ``max_tokens`` the
  call asks for, so a compliant server cannot bill more), for each order. An item whose reservation would take
  spent + reserved past ``budget_usd`` is refused (``budget_exhausted``, no call made); after the calls the
  reservation is replaced by the actual cost. The budget is per ``FrontierJudge`` instance (per process).
- The API key (a ``SecretStr``) is handed only to the openai client: it is never logged, and every error text,
  critique and log line is scrubbed of it (keys of at least 8 characters) before it leaves this module.
- Redaction (``judge_engine.clients.redaction``, off by default): with ``frontier.redact`` / ``redact_hook`` set, the texts
  of the trace are redacted right before the prompt is rendered, here and nowhere else; the request (and so the
  stored trace and the inline verdict) is unchanged. A failing hook sends nothing: the verdict is ``rejected``.
- Each request carries the header ``X-Judgeline-Trace-Id`` (the trace id). A real provider ignores it; the replay
  server uses it only to choose between recorded items whose prompts are identical.
- ``disagreement(inline, frontier)`` is the ``Disagreement`` row to write, or None when the frontier gave no
  verdict or agrees with the inline label.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Iterable

from aiolimiter import AsyncLimiter

from judge_engine.clients.frontier_prompt import estimate_tokens, parse_reply, render
from judge_engine.clients.redaction import RedactionError, redact_trace, redactor
from judge_engine.failures import GaveUp, JitteredWait, describe, retrying
from schemas.base import MAX_TEXT_CHARS, SWAPPED_LABEL
from schemas.settings import FrontierSettings
from schemas.verdict import Disagreement, FrontierRequest, FrontierVerdict, Verdict

log = logging.getLogger("judgeline.frontier")

MAX_REPLY_TOKENS = 512
MESSAGE_OVERHEAD_TOKENS = 8
TRACE_HEADER = "X-Judgeline-Trace-Id"
_MASK = "**********"


def rate_limiter(rps: float, burst: int = 1) -> AsyncLimiter:
    """aiolimiter's leaky bucket: attempts start no faster than ``rps`` per second, at most ``burst`` at once."""
    if not rps > 0:
        raise ValueError(f"the rate must be > 0 per second, got {rps!r}")
    if burst < 1:
        raise ValueError(f"the burst must be at least 1, got {burst!r}")
    return AsyncLimiter(burst, burst / rps)


class SpendBudget:
    """Spend in USD: actual (``spent_usd``) plus reserved for calls in flight, never planned past ``limit_usd``."""

    def __init__(self, limit_usd: float):
        self.limit_usd = limit_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0

    def try_reserve(self, usd: float) -> bool:
        if self.spent_usd + self.reserved_usd + usd > self.limit_usd:
            return False
        self.reserved_usd += usd
        return True

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        self.spent_usd += actual_usd


@dataclass
class FrontierStats:
    """Counters of one FrontierJudge (for tests, logs and metrics)."""

    attempts: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class _OrderResult:
    status: str
    label: str | None = None  # in the original order
    critique: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    order: str = ""  # "original order" / "swapped order"; empty when no call was made

    def describe_failure(self) -> str:
        return f"{self.order} {self.status}: {self.error}" if self.order else str(self.error)


class FrontierJudge:
    """The frontier judge behind ``settings`` (a ``FrontierSettings``). Use one per process and event loop."""

    def __init__(self, settings: FrontierSettings, *, backoff: JitteredWait | None = None, client=None):
        from openai import AsyncOpenAI

        self.settings = settings
        self._key = settings.api_key.get_secret_value()
        self._client = client or AsyncOpenAI(
            api_key=self._key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=0
        )
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self.rate_limiter = rate_limiter(settings.rate_limit_rps)
        self.budget = SpendBudget(settings.budget_usd)
        self.backoff = backoff or JitteredWait()
        self.stats = FrontierStats()
        self._redact = redactor(settings)  # None unless frontier.redact / redact_hook are set

    def __repr__(self) -> str:
        return f"FrontierJudge(model={self.settings.model!r}, base_url={self.settings.base_url!r})"

    async def __aenter__(self) -> "FrontierJudge":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.close()

    # --- cost ---

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        s = self.settings
        return input_tokens / 1000 * s.price_per_1k_input_tokens_usd + output_tokens / 1000 * s.price_per_1k_output_tokens_usd

    def estimate_cost_usd(self, messages: list[dict[str, str]]) -> float:
        """The worst case reserved for one call: estimated input, MAX_REPLY_TOKENS output."""
        tokens = sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        return self.cost_usd(tokens, MAX_REPLY_TOKENS)

    # --- judging ---

    async def judge_many(self, requests: Iterable[FrontierRequest]) -> list[FrontierVerdict]:
        """Judge several requests concurrently (within the same limits); verdicts in the order of the requests."""
        return list(await asyncio.gather(*(self.judge(r) for r in requests)))

    async def judge(self, request: FrontierRequest) -> FrontierVerdict:
        started = time.monotonic()
        trace = request.trace
        orders = [False, True] if trace.kind == "pairwise" and self.settings.judge_both_orders else [False]
        try:
            shown = redact_trace(trace, self._redact)  # the one place PII is removed before anything is sent
        except RedactionError as e:
            log.warning("frontier trace %s not sent: %s", trace.trace_id, e)
            return self._verdict(request, [_OrderResult("rejected", error=f"{e}; nothing was sent")], started)
        prompts = [render(shown, swapped=swapped) for swapped in orders]
        reserve = sum(self.estimate_cost_usd(p) for p in prompts)
        if not self.budget.try_reserve(reserve):
            b = self.budget
            error = (f"spend budget exhausted: {b.spent_usd:.4f} USD spent and {b.reserved_usd:.4f} USD reserved of "
                     f"{b.limit_usd:.4f} USD; this item needs up to {reserve:.4f} USD; raise "
                     "JUDGELINE_FRONTIER__BUDGET_USD to judge more")
            log.warning("frontier trace %s not sent: %s", trace.trace_id, error)
            return self._verdict(request, [_OrderResult("budget_exhausted", error=error)], started)
        results: list[_OrderResult] = []
        try:
            results = list(await asyncio.gather(*(
                self._judge_order(trace.trace_id, trace.kind, p, swapped) for p, swapped in zip(prompts, orders)
            )))
        finally:
            self.budget.settle(reserve, sum(r.cost_usd for r in results))
        return self._verdict(request, results, started)

    async def _judge_order(self, trace_id: str, kind: str, messages: list[dict[str, str]], swapped: bool) -> _OrderResult:
        attempts = 0

        async def attempt():
            nonlocal attempts
            async with self._semaphore:
                await self.rate_limiter.acquire()
                attempts += 1
                self.stats.attempts += 1
                self.stats.in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
                try:
                    return await self._client.chat.completions.create(
                        model=self.settings.model,
                        messages=messages,
                        temperature=0,
                        max_tokens=MAX_REPLY_TOKENS,
                        extra_headers={TRACE_HEADER: trace_id},
                    )
                finally:
                    self.stats.in_flight -= 1

        def on_retry(number: int, exc: BaseException, pause: float) -> None:
            log.info("frontier trace %s attempt %d failed (%s); retrying in %.2f s",
                     trace_id, number, self._scrub(describe(exc)), pause)

        order = "swapped order" if swapped else "original order"
        try:
            retry = retrying(what=f"frontier judge {self.settings.model} on trace {trace_id}",
                             attempts=self.settings.max_retries + 1, wait=self.backoff, on_retry=on_retry)
            response = await retry(attempt)
        except GaveUp as e:
            log.warning("frontier trace %s: %s", trace_id, self._scrub(str(e)))
            return _OrderResult("retries_exhausted", error=self._scrub(str(e)), attempts=e.attempts, order=order)
        except Exception as e:  # the retryer re-raises only permanent errors
            code = getattr(e, "code", None)  # the provider's error code (openai errors carry it)
            error = f"permanent error, not retried: {self._scrub(describe(e))}" + (
                f" [code {self._scrub(str(code))}]" if isinstance(code, (str, int)) else "")
            log.warning("frontier trace %s rejected (%s): %s", trace_id, order, error)
            return _OrderResult("rejected", error=error, attempts=attempts, order=order)

        choices = getattr(response, "choices", None) or []
        text = choices[0].message.content if choices and choices[0].message is not None else None
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            input_tokens, output_tokens = int(usage.prompt_tokens), int(usage.completion_tokens or 0)
        else:  # a server without usage: bill the estimate rather than nothing
            input_tokens = sum(estimate_tokens(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
            output_tokens = estimate_tokens(text or "")
        self.stats.input_tokens += input_tokens
        self.stats.output_tokens += output_tokens
        spent = dict(input_tokens=input_tokens, output_tokens=output_tokens,
                     cost_usd=self.cost_usd(input_tokens, output_tokens), attempts=attempts, order=order)
        parsed = parse_reply(kind, text)
        critique = self._clip(self._scrub(parsed.critique)) if parsed.critique else None
        if parsed.label is None:
            return _OrderResult("unparseable", critique=critique, error=self._scrub(parsed.error), **spent)
        label = SWAPPED_LABEL[parsed.label] if swapped else parsed.label
        return _OrderResult("ok", label=label, critique=critique, **spent)

    def _verdict(self, request: FrontierRequest, results: list[_OrderResult], started: float) -> FrontierVerdict:
        trace = request.trace
        first = results[0]
        second = results[1] if len(results) > 1 else None
        errors = [r.describe_failure() for r in results if r.status != "ok"]
        if first.status == "ok":
            status, label = "ok", first.label
            if second is None:
                label_swapped, confidence = None, 1.0
            elif second.status == "ok":
                label_swapped, confidence = second.label, 1.0 if second.label == first.label else 0.5
            else:
                label_swapped, confidence = None, 0.5
        else:
            status, label, confidence = first.status, None, 0.0
            label_swapped = second.label if second is not None and second.status == "ok" else None
        inline = request.inline_verdict
        return FrontierVerdict(
            **trace.row_keys(),
            judge_name=self.settings.model,
            status=status,
            label=label,
            label_swapped=label_swapped,
            confidence=confidence,
            critique=first.critique,
            error=self._clip("; ".join(errors)) if errors else None,
            request_reason=request.reason,
            inline_label=inline.label if inline is not None else None,
            inline_judge_version=inline.judge_version if inline is not None else None,
            input_tokens=sum(r.input_tokens for r in results),
            output_tokens=sum(r.output_tokens for r in results),
            cost_usd=sum(r.cost_usd for r in results),
            attempts=sum(r.attempts for r in results),
            latency_ms=(time.monotonic() - started) * 1000,
        )

    def _scrub(self, text: str | None) -> str | None:
        if text is None or len(self._key) < 8:
            return text
        return text.replace(self._key, _MASK)

    @staticmethod
    def _clip(text: str) -> str:
        return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."


def disagreement(inline: Verdict, frontier: FrontierVerdict) -> Disagreement | None:
    """The row to record when the frontier's verdict differs from the inline one (None when it agrees or gave none).

    Raises ValueError when the two verdicts are not about the same trace, kind and criterion.
    """
    for field in ("trace_id", "kind", "criterion"):
        if getattr(inline, field) != getattr(frontier, field):
            raise ValueError(f"inline and frontier verdicts differ in {field} ({getattr(inline, field)!r} vs "
                             f"{getattr(frontier, field)!r}); compare verdicts of the same trace")
    if frontier.status != "ok" or frontier.label is None or frontier.label == inline.label:
        return None
    return Disagreement(
        **inline.row_keys(),
        inline_label=inline.label,
        inline_confidence=inline.confidence,
        inline_judge_version=inline.judge_version,
        frontier_label=frontier.label,
        frontier_judge=frontier.judge_name,
        request_reason=frontier.request_reason,
    )
