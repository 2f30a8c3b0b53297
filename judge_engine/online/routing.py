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
  the confident traffic (the part the frontier would otherwise never see).
"""

from __future__ import annotations

import hashlib

from schemas.settings import RoutingSettings
from schemas.verdict import RouteReason

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
