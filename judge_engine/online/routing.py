"""Routing: which inline verdicts also go to the frontier judge, and why. Pure functions, no I/O.

Contract:
- ``sample_point(trace_id)`` maps a trace id to a point in [0, 1) by SHA-256 (the first 8 bytes as an integer
  over 2**64): deterministic across processes, machines and Python versions (no ``hash()`` salt), and uniform.
- ``in_calibration_sample(trace_id, rate)`` is ``sample_point(trace_id) < rate``: so the sample at a lower rate is a
  subset of the sample at a higher one (raising the rate only adds traces), rate 0 samples nothing and rate 1
  everything. A redelivered or replayed trace gets the same decision.
- ``route(confidence, trace_id, routing)`` returns the reason to route, or None: ``low_confidence`` when the
  confidence is below ``routing.threshold`` (strictly), else ``calibration_sample`` when the trace is in the
  calibration sample, else None. Low confidence wins when both apply, so the sample stays an unbiased sample of
  the confident traffic (the part the frontier would otherwise never see). This is the rule without a policy.
- ``decide(confidence, trace, routing, policy, novelty=None)`` is the inline worker's decision under the newest
  routing policy it holds (``judge_engine.online.policy.RoutingPolicy``): the rule of the trace's segment
  (``policy.rule_for``, falling back to coarser segments) decides (``Rule.route``), and the ``Decision`` records the
  policy's version and the rule's threshold and sample rate, which every verdict stores. A rule that routes the
  whole segment (cold start, too little evidence, after a drift alarm) gives the reason ``route_all``. With no
  policy, ``routing.without_policy`` decides: ``route_all`` (the default: every trace is routed, version 0,
  threshold 1, sample rate 1) or ``threshold`` (``route`` above with the settings' threshold and rate, version 0).
  A trace is ``novel`` when its novelty score is above ``routing.novelty_threshold`` (when one is set).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.settings import RoutingSettings
from schemas.verdict import RouteReason

if TYPE_CHECKING:  # policy imports this module (the hash point): no import cycle at run time
    from judge_engine.online.policy import RoutingPolicy

_SCALE = float(2**64)


def sample_point(trace_id: str) -> float:
    digest = hashlib.sha256(trace_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def in_calibration_sample(trace_id: str, rate: float) -> bool:
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"calibration sample rate must be in [0, 1], got {rate!r}")
    return sample_point(trace_id) < rate


def route(confidence: float, trace_id: str, routing: RoutingSettings) -> RouteReason | None:
    if confidence < routing.threshold:
        return "low_confidence"
    if in_calibration_sample(trace_id, routing.calibration_sample_rate):
        return "calibration_sample"
    return None


@dataclass(frozen=True)
class Decision:
    reason: RouteReason | None
    policy_version: int
    threshold: float
    sample_rate: float


def decide(confidence: float, trace: Any, routing: RoutingSettings, policy: "RoutingPolicy | None",
           novelty: float | None = None) -> Decision:
    """The routing decision for a judged ``trace`` (anything with trace_id, tenant, app, kind and criterion)."""
    novel = novelty is not None and routing.novelty_threshold is not None and novelty > routing.novelty_threshold
    if policy is None:
        if routing.without_policy == "route_all":
            return Decision("route_all", 0, 1.0, 1.0)
        reason = route(confidence, trace.trace_id, routing)
        if novel and reason in (None, "calibration_sample"):
            reason = "novel"
        return Decision(reason, 0, routing.threshold, routing.calibration_sample_rate)
    from judge_engine.online.policy import Segment

    rule = policy.rule_for(Segment.of(trace))
    reason = "route_all" if rule.routes_everything else rule.route(confidence, trace.trace_id, novel=novel)
    return Decision(reason, policy.version, rule.threshold, rule.sample_rate)
