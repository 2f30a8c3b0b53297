"""Shadow verdicts (issue 16, docs/judge.md "Shadow mode"): a candidate judge version's verdict on a live trace,
stored apart from the trace's verdict.

Contract:
- ``ShadowVerdict`` is what a candidate version (served beside the live one, never routed, never the trace's
  verdict) said about one trace: label, score and confidence from the candidate, the judge name and version that
  answered, the round-trip time of its request (``latency_ms``), and the trace's live inline verdict at that time
  (``live_judge_version``, ``live_label``, ``live_confidence``, ``live_latency_ms``; None when the trace got no
  inline verdict: the live judge refused it or was unavailable).
- Labels fit the trace's kind (the candidate's and the live one); score and confidence lie in [0, 1].
- Its identity is (tenant, app, criterion, trace_id, judge_version): a redelivered trace judged again replaces its
  twin (``schemas/ddl.py`` migration 8); partitioned by the trace's own time.
- A ``schemas.trace_row.TraceRow`` (the trace's identity fields first), so a ``schemas.base.Message``: strict,
  immutable; ``streams.sink`` derives the table's columns from it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from schemas.base import Label, Name, UtcDatetime, check_label, utc_now
from schemas.trace_row import TraceRow


class ShadowVerdict(TraceRow):
    label: Label
    score: float = Field(ge=0.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    judge_name: Name
    judge_version: Name
    latency_ms: float = Field(ge=0.0)
    live_judge_version: Name | None = None
    live_label: Label | None = None
    live_confidence: float | None = Field(None, ge=0.0, le=1.0)
    live_latency_ms: float | None = Field(None, ge=0.0)
    judged_at: UtcDatetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _labels_fit_kind(self) -> "ShadowVerdict":
        check_label(self.kind, self.label, "label")
        check_label(self.kind, self.live_label, "live_label")
        return self
