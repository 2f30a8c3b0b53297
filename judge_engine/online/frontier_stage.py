"""The frontier stage: a micro-batch of frontier requests -> frontier verdicts, disagreements, verdicts, dead letters.

Contract:
- ``frontier_batch(messages, judge, known=None)`` (async; its only I/O is the frontier judge and ``known``):
  - each message is validated into a ``FrontierRequest``; an invalid one becomes a dead letter (stage ``parse``); one
    of a newer minor schema version (a newer inline worker's, during a rolling upgrade) is accepted under
    ``schemas.versioning``'s rule (its trace's unknown fields kept under ``metadata["_unknown"]``) and counted as
    ``rolled_forward``;
  - ``known(requests)``, when given, returns the frontier verdicts already stored for these traces (a redelivered
    request): a request whose trace (id, tenant, app, criterion) has one with status ``ok`` is not sent again; the
    stored verdict is reused (with the request's reason and inline verdict) and everything below follows from it as
    before. A stored verdict the frontier did not give (any other status) is not reused: the request is judged
    again, and its new frontier verdict replaces the failed one;
  - the valid requests are judged concurrently by ``FrontierJudge.judge_many`` (within its concurrency, rate and
    budget limits), which always returns one ``FrontierVerdict`` per request (a verdict it could not obtain has a
    ``status`` saying why): every frontier verdict is stored, whatever its status;
  - where the request carries the inline verdict and the frontier's label differs from it, a ``Disagreement``
    (``frontier_client.disagreement``);
  - a request without an inline verdict (reason ``judge_unavailable``: the inline judge was down) gets its
    trace's one ``Verdict`` from the frontier (``source=frontier``, judge name and version the frontier model,
    score 1/0/0.5 for A-or-pass/B-or-fail/tie); when the frontier gave no verdict either, the trace becomes a dead
    letter (stage ``frontier``, the request's bytes kept for replay), so that no trace goes unaccounted for
    (``outcome.unanswered`` pairs each such letter with its request).
- ``first_letter_per_trace(outcome, lettered)``: a trace gets one frontier dead letter at most. The same trace's
  request can arrive at several offsets (an inline batch redelivered republishes its requests), and each would fail
  alike; a dead letter is identified by its message's topic/partition/offset, so each would be a dead letter of its
  own. ``lettered(trace_ids)`` returns the frontier dead letters already stored for those traces; a letter is kept
  only when its trace (id, tenant, app, criterion) has none stored at another offset and none earlier in the batch.
  Nothing is lost: the trace's request is in the letter kept (the first), and the requests dropped are counted
  (``repeated_dead_letters``) and logged with their offsets. A redelivery of the same offset keeps its letter (its
  identity is the stored one's, so it replaces its twin and is published again).
- ``FrontierStage.process(messages)`` runs ``frontier_batch`` (with the store's ``frontier_verdicts`` lookup of
  ``settings.frontier.model`` as ``known`` when the store has one), then ``first_letter_per_trace`` when it made
  frontier dead letters (with the store's ``frontier_dead_letters`` lookup of the frontier-requests topic when the
  store has one, under its own hold, so a store error there never repeats a frontier call), stores every row
  (holding while the store is unavailable; a row the store refuses for good is isolated by
  ``pipeline.write_isolating``: the rest of the batch is stored and the refused row's request becomes a dead letter
  of stage ``store``, stored and published), publishes the frontier verdicts and dead letters to their topics
  (holding likewise), and returns only then; the caller acknowledges the messages after it returns (at-least-once:
  a redelivered request reuses its stored frontier verdict, or is judged again when none was stored, and its rows
  replace their twins).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Protocol, Sequence

from judge_engine.clients.frontier_client import disagreement
from judge_engine.online.pipeline import (
    BatchStage,
    Incoming,
    Outbox,
    Rows,
    dead_letter,
    parse_all,
    parse_one,
    rolled_forward,
)
from schemas.base import InvalidMessage, parse_json_bytes
from schemas.dead_letter import DeadLetter
from schemas.verdict import Disagreement, FrontierRequest, FrontierVerdict, Verdict

log = logging.getLogger("judgeline.frontier_stage")

POSITIVE_SCORE = {"A": 1.0, "pass": 1.0, "B": 0.0, "fail": 0.0, "tie": 0.5}


class FrontierJudgeLike(Protocol):
    async def judge_many(self, requests) -> list[FrontierVerdict]: ...


@dataclass
class FrontierOutcome:
    frontier_verdicts: list[FrontierVerdict] = field(default_factory=list)
    requests: list[FrontierRequest] = field(default_factory=list)  # the request of each frontier verdict
    messages: list[Incoming] = field(default_factory=list)  # the message of each request
    disagreements: list[Disagreement] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reused: int = 0  # frontier verdicts already stored (redelivered requests), not judged again
    judged: list[FrontierVerdict] = field(default_factory=list)  # those the frontier was asked for in this batch
    rolled_forward: int = 0  # requests of a newer minor schema version, accepted (schemas.versioning)
    # the dead letters of stage frontier (no inline verdict, none from the frontier), each with its request
    unanswered: list[tuple[DeadLetter, FrontierRequest]] = field(default_factory=list)
    repeated: int = 0  # frontier dead letters not written: their trace already has one


def parse_request(message: Incoming) -> FrontierRequest | DeadLetter:
    return parse_one(message, FrontierRequest, "a FrontierRequest", max_bytes=1024 * 1024)


def verdict_from_frontier(request: FrontierRequest, fv: FrontierVerdict) -> Verdict:
    """The trace's verdict when only the frontier judged it (``fv.status`` must be ok)."""
    trace = request.trace
    return Verdict(
        **trace.row_keys(),
        model=trace.model,
        label=fv.label,
        score=POSITIVE_SCORE[fv.label],
        confidence=fv.confidence,
        judge_name=fv.judge_name,
        judge_version=fv.judge_name,
        source="frontier",
        latency_ms=fv.latency_ms,
        critique=fv.critique,
        route_reason=request.reason,
        judged_at=fv.judged_at,
    )


Known = Callable[[list[FrontierRequest]], Awaitable[list[FrontierVerdict]]]
Lettered = Callable[[list[str]], Awaitable[list[DeadLetter]]]


def _identity(trace_id: str, tenant: str, app: str, criterion: str) -> tuple[str, str, str, str]:
    return trace_id, tenant, app, criterion


def _reuse(stored: FrontierVerdict, request: FrontierRequest) -> FrontierVerdict:
    inline = request.inline_verdict
    return stored.model_copy(update={
        "request_reason": request.reason, "inline_label": inline.label if inline is not None else None,
        "inline_judge_version": inline.judge_version if inline is not None else None})


async def frontier_batch(messages: Sequence[Incoming], judge: FrontierJudgeLike,
                         known: Known | None = None) -> FrontierOutcome:
    outcome = FrontierOutcome()
    valid, dead = parse_all(messages, parse_request)
    outcome.dead_letters.extend(dead)
    if not valid:
        return outcome
    requests = [r for _, r in valid]
    outcome.rolled_forward = rolled_forward(requests)
    # only a verdict the frontier gave is reused: a failed one (retries or budget exhausted, rejected, unparseable)
    # is asked again when its request comes back
    stored = {_identity(fv.trace_id, fv.tenant, fv.app, fv.criterion): fv
              for fv in (await known(requests) if known is not None else []) if fv.status == "ok"}

    def key(r: FrontierRequest):
        return _identity(r.trace.trace_id, r.trace.tenant, r.trace.app, r.trace.criterion)

    fresh = [r for r in requests if key(r) not in stored]
    outcome.judged = list(await judge.judge_many(fresh)) if fresh else []
    judged = iter(outcome.judged)
    for message, request in valid:
        fv = _reuse(stored[key(request)], request) if key(request) in stored else next(judged)
        outcome.reused += key(request) in stored
        outcome.frontier_verdicts.append(fv)
        outcome.requests.append(request)
        outcome.messages.append(message)
        inline = request.inline_verdict
        if inline is not None:
            d = disagreement(inline, fv)
            if d is not None:
                outcome.disagreements.append(d)
        elif fv.status == "ok":
            outcome.verdicts.append(verdict_from_frontier(request, fv))
        else:
            letter = dead_letter(message, f"no inline verdict (the judge was unavailable) and the frontier gave "
                                          f"none: {fv.status}: {fv.error}", "frontier")
            outcome.dead_letters.append(letter)
            outcome.unanswered.append((letter, request))
    return outcome


def _where(letter: DeadLetter) -> tuple[str, int, int]:
    return letter.topic, letter.partition, letter.offset


async def first_letter_per_trace(outcome: FrontierOutcome, lettered: Lettered | None) -> FrontierOutcome:
    """``outcome`` less the frontier dead letters whose trace already has one (see the module contract)."""
    if not outcome.unanswered:
        return outcome
    first: dict[tuple[str, str, str, str], tuple[str, int, int]] = {}
    stored = await lettered(sorted({r.trace.trace_id for _, r in outcome.unanswered})) if lettered else []
    for letter in sorted(stored, key=_where):
        try:
            t = parse_json_bytes(FrontierRequest, letter.raw).trace
        except InvalidMessage:  # a letter cut at its size limit: no identity to match, so nothing is dropped for it
            continue
        first.setdefault(_identity(t.trace_id, t.tenant, t.app, t.criterion), _where(letter))
    dropped: set[int] = set()
    for letter, request in outcome.unanswered:
        t = request.trace
        kept = first.setdefault(_identity(t.trace_id, t.tenant, t.app, t.criterion), _where(letter))
        if kept != _where(letter):
            dropped.add(id(letter))
            log.info("frontier request for trace %r at %s/%d/%d failed again; its trace already has its dead letter "
                     "(%s/%d/%d): not written twice", t.trace_id, *_where(letter), *kept)
    if not dropped:
        return outcome
    outcome.dead_letters = [d for d in outcome.dead_letters if id(d) not in dropped]
    outcome.unanswered = [(d, r) for d, r in outcome.unanswered if id(d) not in dropped]
    outcome.repeated += len(dropped)
    return outcome


class FrontierStage(BatchStage):
    """One frontier worker's processing of micro-batches (see the module contract). Use one per event loop."""

    name = "frontier"

    async def process(self, messages: Sequence[Incoming]) -> FrontierOutcome:
        if not messages:
            return FrontierOutcome()
        lookup = getattr(self.store, "frontier_verdicts", None)
        model = self.settings.frontier.model
        known = None if lookup is None else \
            (lambda requests: lookup(sorted({r.trace.trace_id for r in requests}), model))
        outcome = await self._hold(lambda: frontier_batch(messages, self.judge, known),
                                   f"judging {len(messages)} frontier requests")
        letters = getattr(self.store, "frontier_dead_letters", None)
        if outcome.unanswered and letters is None:
            outcome = await first_letter_per_trace(outcome, None)
        elif outcome.unanswered:
            topic = self.settings.kafka.topics.frontier_requests
            outcome = await self._hold(lambda: first_letter_per_trace(outcome, lambda ids: letters(ids, topic)),
                                       f"looking up the stored dead letters of {len(outcome.unanswered)} traces",
                                       "store")
        rows = Rows(verdicts=outcome.verdicts, frontier_verdicts=outcome.frontier_verdicts,
                    disagreements=outcome.disagreements, dead_letters=outcome.dead_letters)
        topics = self.settings.kafka.topics
        outbox = Outbox()
        for fv in outcome.frontier_verdicts:
            outbox.add(topics.frontier_verdicts, fv.trace_id, fv.to_bytes())
        outbox.add_dead_letters(topics.dead_letters, outcome.dead_letters)
        sources = {r.trace.trace_id: m for r, m in zip(outcome.requests, outcome.messages)}
        refused = await self._store_then_publish(
            rows, outbox, consumed=len(messages),
            origin=lambda row: sources.get(row.trace_id)
            if isinstance(row, (FrontierVerdict, Disagreement, Verdict)) else None)
        outcome.dead_letters = outcome.dead_letters + refused
        self.recorder.frontier(outcome.judged)
        self.recorder.judged(self.name, [(r.trace, fv) for r, fv in zip(outcome.requests, outcome.frontier_verdicts)
                                         if fv.status == "ok"])
        counts = Counter(requests=len(messages), disagreements=len(outcome.disagreements),
                         dead_letters=len(outcome.dead_letters), reused=outcome.reused,
                         repeated_dead_letters=outcome.repeated)
        if outcome.rolled_forward:
            counts["rolled_forward"] = outcome.rolled_forward
        counts.update(f"status_{fv.status}" for fv in outcome.frontier_verdicts)
        self._tally(counts)
        return outcome
