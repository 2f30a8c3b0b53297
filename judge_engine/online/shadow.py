"""Shadow mode in the inline stage: a candidate judge version scores each batch too, and its verdicts are kept apart.

Contract:
- ``ShadowScorer(judge, timeout_s)``: ``await score(traces)`` asks the candidate (a second ``TritonJudge``, on the
  shadow model: ``settings.shadow``) for one result per trace, in one call bounded by ``timeout_s`` and never
  retried. It never raises (cancellation aside): it returns a ``ShadowResult`` with one result per trace (None for a
  trace not scored) and the count of traces not scored per ``reason`` (``not_loaded``: Triton serves no such model
  or version; ``timeout``; ``refused``: a permanent error, e.g. bad input for that version or a short answer;
  ``unavailable``: any other error). When the candidate refuses the batch, its traces are judged once more one per
  call (concurrently, within what is left of ``timeout_s``), so a trace it refuses costs only its own row; any other
  failure costs the batch's rows. A failure is logged (a warning at most every ``warn_every_s`` per reason, with the
  count since).
- ``shadow_rows(traces, results, live)``: the ``ShadowVerdict`` of each scored trace (``live``: the trace's inline
  ``Verdict`` by trace id, whose version, label, confidence and latency the row records; absent: the trace got no
  inline verdict), plus how many results were unusable (a label outside the kind's vocabulary, a score or
  confidence outside [0, 1]: left out, never a dead letter).
- ``shadow_judge(settings)``: the candidate's ``TritonJudge`` (the shadow model, the version ``shadow.version``
  names or its latest, no retries, ``shadow.timeout_s`` per request), or None when shadow mode is off.
- Nothing here changes a live verdict, a routing decision or what the batch publishes: the inline stage
  (``judge_engine.online.inline``) starts ``score`` beside the live call and stores the rows with the batch, before
  its offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from judge_engine.failures import GaveUp, classify, describe
from judge_engine.online.judge_calls import Judge, checked_scores, judge_exactly, judge_singles
from schemas.shadow import ShadowVerdict
from schemas.trace import Trace
from schemas.verdict import Verdict

if TYPE_CHECKING:
    from judge_engine.clients.triton_client import JudgeResult
    from schemas.settings import Settings

log = logging.getLogger("judgeline.shadow")

# Triton's words for a model or version it does not serve (gRPC UNAVAILABLE or NOT_FOUND, depending on the case)
_NOT_LOADED = ("unknown model", "not found", "is not at ready state", "has no available versions", "not ready")
REASONS = ("not_loaded", "timeout", "refused", "unavailable")


@dataclass
class ShadowResult:
    results: list["JudgeResult | None"] = field(default_factory=list)  # one per trace; None: not scored
    failed: Counter = field(default_factory=Counter)  # traces not scored, per reason


def failure_reason(exc: BaseException) -> str:
    """One of ``REASONS`` for an error of the shadow call."""
    if isinstance(exc, GaveUp):
        exc = exc.last
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "DEADLINE_EXCEEDED" in str(exc):
        return "timeout"
    if any(words in str(exc).lower() for words in _NOT_LOADED):
        return "not_loaded"
    return "refused" if classify(exc) == "permanent" else "unavailable"


class ShadowScorer:
    def __init__(self, judge: Judge, timeout_s: float, *, warn_every_s: float = 30.0, clock=time.monotonic):
        self.judge = judge
        self.timeout_s = timeout_s
        self.warn_every_s = warn_every_s
        self._clock = clock
        self._warned: dict[str, float] = {}
        self._since_warned: Counter = Counter()

    async def score(self, traces: Sequence[Trace]) -> ShadowResult:
        if not traces:
            return ShadowResult()
        started = self._clock()
        try:
            return ShadowResult(await asyncio.wait_for(judge_exactly(self.judge, traces), self.timeout_s))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a shadow failure never holds the batch: classified, counted
            reason, error = failure_reason(e), describe(e)
            if self._clock() - started >= self.timeout_s:  # the client may turn the cancellation into its own error
                reason = "timeout"
        if reason != "refused" or len(traces) == 1:
            return self._failed(traces, [None] * len(traces), [(reason, error)] * len(traces))
        left = self.timeout_s - (self._clock() - started)
        try:  # one bad trace must not cost the others their rows
            singles = await asyncio.wait_for(judge_singles(self.judge, list(traces)), max(left, 0.001))
        except asyncio.TimeoutError as e:
            return self._failed(traces, [None] * len(traces), [("timeout", describe(e))] * len(traces))
        results = [None if isinstance(r, BaseException) else r for r in singles]
        errors = [(failure_reason(r), describe(r)) if isinstance(r, BaseException) else None for r in singles]
        return self._failed(traces, results, errors)

    def _failed(self, traces: Sequence[Trace], results: list, errors: list) -> ShadowResult:
        out = ShadowResult(results)
        for error in errors:
            if error is not None:
                out.failed[error[0]] += 1
        now = self._clock()
        for reason, n in out.failed.items():
            self._since_warned[reason] += n
            if now - self._warned.get(reason, float("-inf")) >= self.warn_every_s:
                example = next(e for e in errors if e is not None and e[0] == reason)[1]
                log.warning("shadow judge failed (%s) on %d traces since the last warning (of a batch of %d), e.g. "
                            "%s; the live verdicts are unaffected (judgeline_shadow_failures_total)", reason,
                            self._since_warned[reason], len(traces), example)
                self._warned[reason] = now
                self._since_warned[reason] = 0
        return out

    async def close(self) -> None:
        close = getattr(self.judge, "close", None)
        if close is not None:
            await close()


def shadow_rows(traces: Sequence[Trace], results: Sequence["JudgeResult | None"],
                live: Mapping[str, Verdict]) -> tuple[list[ShadowVerdict], int]:
    """(the shadow verdicts, how many results were unusable); see the module contract."""
    rows: list[ShadowVerdict] = []
    unusable = 0
    for trace, result in zip(traces, results, strict=True):
        if result is None:
            continue
        verdict = live.get(trace.trace_id)
        try:
            score, confidence = checked_scores(result)
            rows.append(ShadowVerdict(
                **trace.row_keys(), label=result.label, score=score, confidence=confidence,
                judge_name=result.model_name, judge_version=str(result.model_version),
                latency_ms=max(0.0, result.latency_ms),
                live_judge_version=verdict.judge_version if verdict else None,
                live_label=verdict.label if verdict else None,
                live_confidence=verdict.confidence if verdict else None,
                live_latency_ms=verdict.latency_ms if verdict else None))
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            unusable += 1
            log.debug("shadow result for %s unusable: %s", trace.trace_id, describe(e))
    return rows, unusable


def shadow_judge(settings: "Settings"):
    """The candidate's client, or None when ``settings.shadow.version`` is empty (shadow mode off)."""
    if not settings.shadow.enabled:
        return None
    from judge_engine.clients.triton_client import TritonJudge

    version = "" if settings.shadow.version == "latest" else settings.shadow.version
    triton = settings.triton.model_copy(update={"model_name": settings.shadow_model_name, "model_version": version,
                                                "max_retries": 0, "timeout_s": settings.shadow.timeout_s})
    return TritonJudge(triton)
