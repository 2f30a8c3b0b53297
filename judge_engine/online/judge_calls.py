"""Calling a judge, shared by the live inline stage and the shadow candidate (``inline``, ``shadow``).

Contract:
- ``Judge`` is what a stage calls: ``await judge(items)`` answers one ``JudgeResult`` per item, in order (the Triton
  client, the benchmark's stub, a test's double).
- ``judge_exactly(judge, traces)`` is one call whose answer must hold exactly one result per trace: a short or long
  answer raises ``JudgeAnswerMismatch`` (permanent under the failure policy), so results are never zipped past it.
- ``judge_singles(judge, traces)`` judges each trace in a call of its own, concurrently: per trace its result or the
  error of its call (cancellation still propagates). The stages use it to find the trace a judge refuses.
- ``checked_scores(result)`` is (score, confidence) clipped into [0, 1] from float noise, or ``ValueError`` naming
  the value when one is not finite or clearly outside [0, 1].
"""

from __future__ import annotations

import asyncio
import math
from typing import Iterable, Protocol, Sequence

from judge_engine.clients.triton_client import JudgeAnswerMismatch, JudgeResult
from schemas.trace import Trace


class Judge(Protocol):
    async def judge(self, items: Iterable) -> list[JudgeResult]: ...


async def judge_exactly(judge: Judge, traces: Sequence[Trace]) -> list[JudgeResult]:
    results = list(await judge.judge(list(traces)))
    if len(results) != len(traces):  # never zip past a short answer
        raise JudgeAnswerMismatch(f"the judge returned {len(results)} results for {len(traces)} traces")
    return results


async def judge_singles(judge: Judge, traces: Sequence[Trace]) -> list[JudgeResult | BaseException]:
    out = await asyncio.gather(*(judge_exactly(judge, [t]) for t in traces), return_exceptions=True)
    for result in out:
        if isinstance(result, asyncio.CancelledError):
            raise result
    return [r if isinstance(r, BaseException) else r[0] for r in out]


def checked_scores(result: JudgeResult) -> tuple[float, float]:
    for name in ("score", "confidence"):
        value = getattr(result, name)
        if not math.isfinite(value) or not -1e-6 <= value <= 1 + 1e-6:
            raise ValueError(f"the judge returned {name}={value!r}, outside [0, 1]")
    return min(1.0, max(0.0, result.score)), min(1.0, max(0.0, result.confidence))
