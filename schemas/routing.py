"""The stored records of routing from live evidence (issue 15, docs/routing.md): a published routing policy and a
drift alarm. The policy itself (its segments and rules) is ``judge_engine.online.policy.RoutingPolicy``; these are
the rows that say which policy was published when, why, and on what evidence, and which segment's agreement drifted.

Contract:
- ``PolicyRecord`` is one row of ``routing_policies``: the policy's version and scope, why it was made
  (``scheduled``, ``drift``: tightened after an alarm, ``manual``), the judge version it was fitted for, how many
  rules it has, the policy as its own JSON (``RoutingPolicy.to_json``, exactly what was published on the
  ``routing-policies`` topic) and the evidence behind each rule (JSON: one object per rule). Versions increase
  within a scope; the row's identity is (scope, version), so storing it twice keeps one row.
- ``DriftAlarm`` is one row of ``drift_alarms``: the segment (its key text and its parts; ``*`` for a level the
  segment does not fix), the sequential test's statistic, the level it crossed and after how many observations, the
  policy version it was detected under, and the action taken (``tightened``: the controller published a policy that
  routes the segment entirely). The identity is (segment, policy_version).
- Both are ``schemas.base.Message`` models: strict, immutable, JSON-serialisable; texts stay within the usual limits.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.base import Message, Name, Text, UtcDatetime, utc_now

PolicyReason = Literal["scheduled", "drift", "manual"]
AlarmAction = Literal["tightened", "logged"]


class PolicyRecord(Message):
    version: int = Field(ge=1)
    scope: Name = "default"
    reason: PolicyReason = "scheduled"
    judge_version: str = ""
    rules: int = Field(ge=0)
    policy: str  # RoutingPolicy.to_json()
    evidence: str = "[]"  # JSON: the evidence behind each rule
    created_at: UtcDatetime = Field(default_factory=utc_now)


class DriftAlarm(Message):
    segment: str = Field(min_length=1, max_length=1024)
    tenant: str = "*"
    app: str = "*"
    kind: str = "*"
    criterion: str = "*"
    statistic: float = Field(allow_inf_nan=False)
    threshold: float = Field(allow_inf_nan=False)
    observations: int = Field(ge=0)
    policy_version: int = Field(ge=0)
    action: AlarmAction = "tightened"
    detail: Text = ""
    detected_at: UtcDatetime = Field(default_factory=utc_now)
