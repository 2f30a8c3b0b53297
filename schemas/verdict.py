"""Judgements: the inline `Verdict`, the `FrontierRequest` that routes a trace to the frontier judge, the
`FrontierVerdict` it returns, and the `Disagreement` recorded where the two differ.

Contract:
- A label is always in its kind's vocabulary (pairwise A/B/tie, pointwise pass/fail); a verdict whose label does
  not fit its kind is rejected.
- ``score`` is the judge's probability for the positive label (``A`` for pairwise, ``pass`` for pointwise) and
  ``confidence`` the calibrated probability of the chosen label; both lie in [0, 1].
- Every verdict names its judge and version, and its source (``inline`` or ``frontier``); the inline verdict
  records the routing decision (``route_reason``: None when it was not routed) and what it was decided under: the
  routing policy's version (``policy_version``, 0 when no policy had been published), the segment's threshold
  (``route_threshold``) and calibration sample rate (``sample_rate``), and the trace's ``novelty`` score where the
  judge gives one. These are optional with defaults, so a verdict written before issue 15 still parses.
- ``Verdict``, ``FrontierVerdict`` and ``Disagreement`` are ``schemas.trace_row.TraceRow``s: the trace's identity
  fields (trace_id, tenant, app, kind, criterion, trace_time) come first, then each model's own.
- A frontier verdict that could not be obtained still exists, with ``status`` saying why (budget exhausted,
  retries exhausted, unparseable answer): nothing routed vanishes silently.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.base import Label, Message, Name, Text, UtcDatetime, check_label, utc_now
from schemas.trace import Trace
from schemas.trace_row import TraceRow

# route_all: the segment's routing policy rule routes every trace (cold start, too little evidence, after a drift
# alarm); novel: the trace's novelty score is above the policy's novelty threshold (docs/routing.md)
RouteReason = Literal["low_confidence", "calibration_sample", "forced", "judge_unavailable", "route_all", "novel"]
FrontierStatus = Literal["ok", "unparseable", "budget_exhausted", "retries_exhausted", "rejected"]


class Verdict(TraceRow):
    model: Name | None = None
    label: Label
    score: float = Field(ge=0.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    judge_name: Name
    judge_version: Name
    source: Literal["inline", "frontier"] = "inline"
    latency_ms: float = Field(ge=0.0)
    critique: Text | None = None
    route_reason: RouteReason | None = None
    policy_version: int = Field(0, ge=0)
    route_threshold: float | None = Field(None, ge=0.0, le=2.0, allow_inf_nan=False)  # a policy rule's: above 1 routes all
    sample_rate: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    novelty: float | None = Field(None, allow_inf_nan=False)
    produced_at: UtcDatetime | None = None
    judged_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _label_fits_kind(self) -> "Verdict":
        check_label(self.kind, self.label, "label")
        return self

    @property
    def routed(self) -> bool:
        return self.route_reason is not None


class FrontierRequest(Message):
    """A trace sent to the frontier judge, with the inline verdict it is to be compared to and why it was sent."""

    trace: Trace
    reason: RouteReason
    inline_verdict: Verdict | None = None
    requested_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _same_trace(self) -> "FrontierRequest":
        if self.inline_verdict is not None and self.inline_verdict.trace_id != self.trace.trace_id:
            raise ValueError("inline_verdict.trace_id must equal trace.trace_id")
        return self


class FrontierVerdict(TraceRow):
    judge_name: Name  # the frontier model, e.g. gpt-4
    status: FrontierStatus = "ok"
    label: Label | None = None  # None unless status == ok
    label_swapped: Label | None = None  # pairwise judged in the other order, mapped back to this order
    confidence: float = Field(1.0, ge=0.0, le=1.0)  # 1.0 when both orders agree, 0.5 when they conflict
    critique: Text | None = None
    error: Text | None = None
    request_reason: RouteReason
    inline_label: Label | None = None
    inline_judge_version: Name | None = None
    input_tokens: int = Field(0, ge=0)
    output_tokens: int = Field(0, ge=0)
    cost_usd: float = Field(0.0, ge=0.0)
    attempts: int = Field(0, ge=0)
    latency_ms: float = Field(0.0, ge=0.0)
    judged_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _consistent(self) -> "FrontierVerdict":
        check_label(self.kind, self.label, "label")
        check_label(self.kind, self.label_swapped, "label_swapped")
        check_label(self.kind, self.inline_label, "inline_label")
        if self.status == "ok" and self.label is None:
            raise ValueError("label is required when status is ok")
        if self.status != "ok" and self.label is not None:
            raise ValueError(f"label must be empty when status is {self.status}; the judge gave no verdict")
        return self


class Disagreement(TraceRow):
    inline_label: Label
    inline_confidence: float = Field(ge=0.0, le=1.0)
    inline_judge_version: Name
    frontier_label: Label
    frontier_judge: Name
    request_reason: RouteReason
    detected_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _differs(self) -> "Disagreement":
        check_label(self.kind, self.inline_label, "inline_label")
        check_label(self.kind, self.frontier_label, "frontier_label")
        if self.inline_label == self.frontier_label:
            raise ValueError("a disagreement needs inline_label != frontier_label")
        return self
