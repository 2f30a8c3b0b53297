"""The inline stage: a micro-batch of raw trace messages -> verdicts, frontier requests and dead letters.

Contract:
- ``judge_batch(messages, judge, settings)`` (async; its only I/O is the judge):
  - each message is validated into a ``Trace`` (``schemas.parse_json_bytes``: size, UTF-8, JSON, fields, and the
    schema version rule of ``schemas.versioning``: a trace of a newer minor version is judged, its unknown fields
    kept under ``metadata["_unknown"]``, and counted as ``rolled_forward``); a trace
    without its own ``timestamp`` takes the record's Kafka timestamp (deterministic under redelivery); an
    invalid one becomes a ``DeadLetter`` (stage ``parse``) with the reason naming the field and the raw bytes whole;
  - the valid traces are judged in one call (``TritonJudge.judge``: requests of at most the model's batch size,
    merged again by Triton's dynamic batcher). The judge must return exactly one result per trace (a short or long
    answer is ``JudgeAnswerMismatch``, permanent: never zipped; ``judge_calls.judge_exactly``). When the batch
    fails, its traces are judged again one per call, so a bad trace costs only itself: a trace the judge refuses as
    bad input (permanent under ``judge_engine.failures``), or whose call fails again, once more, while others of its batch were judged (a model
    that raises for one input), becomes a dead letter (stage ``judge``) with the error, and the batch goes on;
  - when the judge judged none of the batch and the failure may pass (``GaveUp`` after its retries, or any other
    transient error) it raises ``JudgeUnavailable``, unless ``settings.stream.judge_unavailable`` is ``frontier``: then every valid trace of
    the batch becomes a ``FrontierRequest`` with reason ``judge_unavailable`` and no inline verdict;
  - every judged trace gets exactly one ``Verdict``: label, score and confidence from the judge, the judge name and
    version that answered, ``produced_at`` the message's timestamp, and the routing decision of
    ``judge_engine.online.routing.decide`` under ``policy`` (the newest routing policy the worker holds, or None):
    ``route_reason`` (None when not routed), ``policy_version``, the segment's ``route_threshold`` and
    ``sample_rate``, and the judge's ``novelty`` score where it gives one. A routed verdict also yields a
    ``FrontierRequest`` carrying the verdict and the reason.
- Shadow mode (``InlineStage(..., shadow=ShadowScorer)``, docs/judge.md): the batch's valid traces are also sent to
  the candidate judge (``judge_engine.online.shadow``), concurrently with the live call; after the live outcome the
  stage waits for the candidate (bounded by ``shadow.timeout_s``) and adds its ``ShadowVerdict`` rows (each with the
  trace's live verdict, when it got one) to the batch's rows: stored with the batch, before its offsets are
  committed, never published, never routed. A shadow failure (not loaded, timeout, error) only leaves the traces it
  hit without shadow rows: it is counted (``shadow_failed_<reason>`` per trace, ``shadow_verdicts``: the running counts
  and ``judgeline_shadow_*`` metrics) and the batch goes on; the live verdicts, routing and dead letters are exactly
  those without shadow mode.
- ``InlineStage(..., policy=fn)`` asks ``fn()`` for the routing policy once per batch (the worker's
  ``streams.policy_feed.PolicyFeed.current``: a new policy applies from the next batch, without a restart).
- ``InlineStage.process(messages)`` is ``deliver(await prepare(messages))``. ``prepare`` runs ``judge_batch``
  (holding, with backoff, while the judge is unavailable and the policy is ``hold``) and builds the batch's rows
  and messages, storing nothing; ``deliver`` stores the verdicts, dead letters and the routed traces with their text (for the
  annotation queue) (holding while the store is
  unavailable), then publishes the frontier requests, dead letters and verdicts to their topics (holding
  likewise), and returns only when all of it is durable. The caller acknowledges the messages after ``deliver``
  returns, never before: an offset is committed only after its rows are stored and its frontier request is
  published (at-least-once; a redelivered trace is judged again and its rows replace their twins in the
  ReplacingMergeTree tables). The split lets a worker judge batch N+1 while batch N is being stored.
- ``ConstantJudge`` answers every item with a fixed verdict after a fixed delay: the stub that shows the
  pipeline's own ceiling in the benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from judge_engine.clients.triton_client import JudgeResult
from judge_engine.failures import classify, describe
from judge_engine.online.judge_calls import Judge, checked_scores, judge_exactly, judge_singles
from judge_engine.online.pipeline import (
    BatchStage,
    Incoming,
    Outbox,
    Publish,
    Rows,
    Store,
    dead_letter,
    parse_all,
    parse_one,
    rolled_forward,
)
from judge_engine.online.routing import decide
from judge_engine.online.shadow import ShadowScorer, shadow_rows
from schemas.dead_letter import DeadLetter
from schemas.settings import Settings
from schemas.shadow import ShadowVerdict
from schemas.trace import Trace
from schemas.verdict import FrontierRequest, Verdict

if TYPE_CHECKING:
    from judge_engine.online.policy import RoutingPolicy

log = logging.getLogger("judgeline.inline")


class JudgeUnavailable(RuntimeError):
    """The judge could not be reached (after its own retries); the batch was not judged."""


@dataclass
class InlineOutcome:
    verdicts: list[Verdict] = field(default_factory=list)
    traces: list[Trace] = field(default_factory=list)  # the trace of each verdict, in the same order
    requests: list[FrontierRequest] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    sources: dict[str, Incoming] = field(default_factory=dict)  # each judged trace's message, by trace id
    rolled_forward: int = 0  # traces of a newer minor schema version, accepted (schemas.versioning)


def parse_trace(message: Incoming) -> Trace | DeadLetter:
    """The message's trace; one sent without its own ``timestamp`` takes the record's Kafka timestamp (when usable),
    so a redelivery gets the same ``trace_time`` and lands in the same partition of the tables."""
    parsed = parse_one(message, Trace, "a Trace as JSON")
    if isinstance(parsed, Trace) and "timestamp" not in parsed.model_fields_set and message.timestamp is not None:
        parsed = parsed.model_copy(update={"timestamp": message.timestamp})
    return parsed


def _transient(result: object) -> bool:
    return isinstance(result, BaseException) and classify(result) != "permanent"


async def _judge_isolating(judge: Judge, traces: list[Trace]) -> list[JudgeResult | BaseException]:
    """Results in order (see the module contract): a trace the judge refuses as bad input, or that keeps failing
    while the rest of its batch is judged, gets its error instead of a result; ``JudgeUnavailable`` when the judge
    judged none of them and the failure may pass."""
    try:
        return await judge_exactly(judge, traces)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - classified just below
        if len(traces) == 1:
            if classify(e) != "permanent":
                raise JudgeUnavailable(describe(e)) from e
            return [e]
        log.info("judging a batch of %d failed (%s error: %s); judging its traces one by one",
                 len(traces), classify(e), describe(e))
    out = await judge_singles(judge, traces)
    failing = [i for i, r in enumerate(out) if _transient(r)]
    if failing and all(isinstance(r, BaseException) for r in out):
        raise JudgeUnavailable(describe(out[failing[0]])) from out[failing[0]]  # nothing judged: the judge is down
    if failing:  # others of the batch were judged: once more, then the failure is the trace's own
        for i, result in zip(failing, await judge_singles(judge, [traces[i] for i in failing]), strict=True):
            out[i] = result
    return out


def make_verdict(trace: Trace, result: JudgeResult, message: Incoming, settings: Settings,
                 policy: "RoutingPolicy | None" = None) -> Verdict:
    score, confidence = checked_scores(result)
    novelty = result.novelty if result.novelty is not None and math.isfinite(result.novelty) else None
    decision = decide(confidence, trace, settings.routing, policy, novelty)
    return Verdict(
        **trace.row_keys(),
        model=trace.model,
        label=result.label,
        score=score,
        confidence=confidence,
        judge_name=result.model_name,
        judge_version=str(result.model_version),
        source="inline",
        latency_ms=max(0.0, result.latency_ms),
        route_reason=decision.reason,
        policy_version=decision.policy_version,
        route_threshold=decision.threshold,
        sample_rate=decision.sample_rate,
        novelty=novelty,
        produced_at=message.timestamp,
    )


async def judge_batch(messages: Sequence[Incoming], judge: Judge, settings: Settings,
                      policy: "RoutingPolicy | None" = None,
                      parsed: "tuple[list[tuple[Incoming, Trace]], list[DeadLetter]] | None" = None) -> InlineOutcome:
    outcome = InlineOutcome()
    valid, dead = parsed if parsed is not None else parse_all(messages, parse_trace)
    outcome.dead_letters.extend(dead)
    if not valid:
        return outcome
    traces = [t for _, t in valid]
    outcome.sources = {t.trace_id: m for m, t in valid}
    outcome.rolled_forward = rolled_forward(traces)
    try:
        results = await _judge_isolating(judge, traces)
    except JudgeUnavailable:
        if settings.stream.judge_unavailable != "frontier":
            raise
        outcome.requests.extend(FrontierRequest(trace=t, reason="judge_unavailable") for t in traces)
        return outcome
    for (message, trace), result in zip(valid, results, strict=True):
        if isinstance(result, BaseException):
            why = ("the judge refused it" if classify(result) == "permanent" else
                   "the judge kept failing on it while the rest of its batch was judged")
            outcome.dead_letters.append(dead_letter(message, f"{why}: {describe(result)}", "judge"))
            continue
        try:
            verdict = make_verdict(trace, result, message, settings, policy)
        except ValueError as e:  # a label outside the kind's vocabulary, a score outside [0, 1]
            outcome.dead_letters.append(dead_letter(message, f"the judge's answer is unusable: {describe(e)}",
                                                    "judge"))
            continue
        outcome.verdicts.append(verdict)
        outcome.traces.append(trace)
        if verdict.route_reason is not None:
            outcome.requests.append(FrontierRequest(trace=trace, reason=verdict.route_reason, inline_verdict=verdict))
    return outcome


class InlineStage(BatchStage):
    """One inline worker's processing of micro-batches (see the module contract). Use one per event loop."""

    name = "inline"

    def __init__(self, settings: Settings, judge: Judge, store: Store, publish: Publish, *,
                 sleep=asyncio.sleep, publish_verdicts: bool = True,
                 policy: Callable[[], "RoutingPolicy | None"] = lambda: None,
                 shadow: ShadowScorer | None = None, **kwargs):
        super().__init__(settings, judge, store, publish, sleep=sleep, **kwargs)
        self.publish_verdicts = publish_verdicts
        self.policy = policy
        self.shadow = shadow

    async def process(self, messages: Sequence[Incoming]) -> InlineOutcome:
        return await self.deliver(await self.prepare(messages))

    async def prepare(self, messages: Sequence[Incoming]) -> "JudgedBatch":
        """Judge a batch (holding while the judge is unavailable) and build its rows and messages; stores nothing."""
        if not messages:
            return JudgedBatch(0, InlineOutcome(), Rows(), Outbox())
        policy = self.policy()  # one policy for the whole batch
        parsed = parse_all(messages, parse_trace)
        traces = [t for _, t in parsed[0]]
        # the candidate judges beside the live call (shadow mode); it never raises and is never held
        shadowing = asyncio.ensure_future(self.shadow.score(traces)) if self.shadow and traces else None
        try:
            with self._timed("judge_s"):
                outcome = await self._hold(lambda: judge_batch(messages, self.judge, self.settings, policy, parsed),
                                           f"judging a batch of {len(messages)} traces")
            shadow_rows_, shadow_counts = await self._shadow_rows(shadowing, traces, outcome)
        finally:
            if shadowing is not None and not shadowing.done():
                shadowing.cancel()  # cancelled while holding (shutdown): nothing of the batch is acknowledged
        rows = Rows(verdicts=outcome.verdicts, dead_letters=outcome.dead_letters,
                    traces=[r.trace for r in outcome.requests], shadow_verdicts=shadow_rows_)
        topics = self.settings.kafka.topics
        outbox = Outbox()
        for request in outcome.requests:
            outbox.add(topics.frontier_requests, request.trace.trace_id, request.to_bytes())
        outbox.add_dead_letters(topics.dead_letters, outcome.dead_letters)
        if self.publish_verdicts:
            for verdict in outcome.verdicts:
                outbox.add(topics.verdicts, verdict.trace_id, verdict.to_bytes())
        return JudgedBatch(len(messages), outcome, rows, outbox, shadow_counts)

    async def _shadow_rows(self, shadowing: "asyncio.Future | None", traces: list[Trace],
                           outcome: InlineOutcome) -> tuple[list[ShadowVerdict], Counter]:
        """The candidate's rows for this batch and the counts they add (``shadow_verdicts``,
        ``shadow_failed_<reason>`` per trace not shadowed)."""
        counts: Counter = Counter()
        if shadowing is None:
            return [], counts
        with self._timed("shadow_wait_s"):  # the time the batch waited on the candidate after the live call
            result = await shadowing
        counts.update({f"shadow_failed_{reason}": n for reason, n in result.failed.items()})
        live = {v.trace_id: v for v in outcome.verdicts}
        rows, unusable = shadow_rows(traces, result.results, live)
        counts.update(shadow_verdicts=len(rows), shadow_failed_unusable=unusable)
        return rows, counts

    async def deliver(self, batch: "JudgedBatch") -> InlineOutcome:
        """Store a prepared batch's rows, then publish its messages (each held while it fails); returns when all
        of it is durable. Only then may its messages be acknowledged."""
        if not batch.messages:
            return batch.outcome
        outcome = batch.outcome
        sources = outcome.sources
        refused = await self._store_then_publish(
            batch.rows, batch.outbox, consumed=batch.messages,
            origin=lambda row: sources.get(row.trace_id) if isinstance(row, (Verdict, Trace)) else None)
        if refused:  # a verdict the store refused for good: the trace's account is its dead letter
            gone = {(d.partition, d.offset) for d in refused}
            keep = [i for i, v in enumerate(outcome.verdicts)
                    if (sources[v.trace_id].partition, sources[v.trace_id].offset) not in gone]
            outcome.verdicts = [outcome.verdicts[i] for i in keep]
            outcome.traces = [outcome.traces[i] for i in keep]
            outcome.dead_letters = outcome.dead_letters + refused
        self.recorder.judged(self.name, list(zip(outcome.traces, outcome.verdicts)))
        counts = Counter(messages=batch.messages, verdicts=len(outcome.verdicts),
                         dead_letters=len(outcome.dead_letters), batches=1)
        if outcome.rolled_forward:
            counts["rolled_forward"] = outcome.rolled_forward
        counts.update(f"routed_{r.reason}" for r in outcome.requests)
        counts.update(batch.shadow_counts)
        self._tally(counts)
        return outcome


@dataclass
class JudgedBatch:
    """A judged batch not yet stored: what ``InlineStage.deliver`` stores and publishes."""

    messages: int
    outcome: InlineOutcome
    rows: Rows
    outbox: Outbox
    shadow_counts: Counter = field(default_factory=Counter)


class ConstantJudge:
    """A stand-in judge: every item gets the same verdict after ``delay_s`` per call (benchmarks only)."""

    def __init__(self, delay_s: float = 0.0, confidence: float = 0.95, version: str = "stub"):
        self.delay_s = delay_s
        self.confidence = confidence
        self.version = version

    async def judge(self, items: Iterable) -> list[JudgeResult]:
        items = list(items)
        await asyncio.sleep(self.delay_s)
        return [JudgeResult(label="A" if getattr(it, "kind", None) == "pairwise" else "pass", score=self.confidence,
                            confidence=self.confidence, probs=(self.confidence, 1 - self.confidence, 0.0),
                            swap_consistent=True, model_name="constant-stub", model_version=self.version,
                            latency_ms=self.delay_s * 1000) for it in items]

    async def close(self) -> None:
        return None
