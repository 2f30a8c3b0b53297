"""Routing policy: per-segment thresholds fitted from live evidence, adaptive calibration sampling, drift alarms.
Pure: no I/O, no clock (``now`` is passed in). The live controller and ``judgeline eval --policy`` both use this
module, so the simulation measures the code that runs.

Contract:
- A ``Segment`` is (tenant, app, kind, criterion); ``"*"`` means any. ``fallbacks()`` is the chain from a segment to
  coarser ones: tenant/app/kind/criterion -> tenant/app/kind/* -> tenant/*/kind/* -> */*/kind/* -> */*/*/*.
- A ``RoutingPolicy`` always holds the ``*/*/*/*`` rule; ``rule_for(segment)`` is the first rule along the segment's
  fallback chain. ``Rule.route(confidence, trace_id)`` is the routing decision under that rule: ``route_all`` when
  the rule routes the whole segment (``route_all``, or a threshold above 1), ``low_confidence`` below the threshold,
  ``novel`` when the caller says the trace is novel, ``calibration_sample`` when the trace's hash point (the one in
  ``judge_engine.online.routing``) falls below the rule's sample rate, else None (the inline verdict is accepted).
- ``cold_start()`` routes every segment: with no evidence nothing is accepted. ``to_json``/``from_json`` round-trip
  exactly; ``from_json`` is strict (unknown or missing fields, wrong types or ranges raise ValueError naming the
  field). The JSON carries ``schema_version`` (``schemas.versioning``, the one rule every message follows): absent
  is 1.0; another major or an unparseable version raises naming ``policy.schema_version``; a newer minor's fields
  this release does not know (in the policy, its rules or resets) are ignored, not an error (a policy has no
  metadata to keep them in; they stay on the topic).
- ``fit_policy`` estimates, per segment, the accepted verdicts' error against the reference label (a gold label
  outranks the frontier verdict; evidence with neither is ignored), weighting each item by its ``weight``
  (1/sample rate for a calibration-sample trace, 1 for the census below the threshold, so the estimate is unbiased
  for the confident traffic). The threshold is the LOWEST candidate (a 0.05 grid) whose accepted set has a one-sided
  Clopper-Pearson upper bound at ``confidence_level`` on its error at most ``accepted_error_rate``; the bound uses
  Kish's effective sample size n_eff = (sum w)^2 / sum w^2 and x = error_rate * n_eff (scipy.stats.beta.ppf, which
  takes a fractional x). No candidate passes, or fewer than ``min_evidence`` items: the segment routes everything.
- Fitted segments: every observed fine segment, from its own evidence when it has ``min_evidence`` items, else from
  its app-level pool (tenant/app/kind/*). Evidence is never pooled across apps or tenants: the coarser rules
  (tenant/*/kind/*, */*/kind/*, */*/*/*) route everything, so a new app, tenant or kind is routed until its own
  evidence says otherwise (pooling with another app's evidence would hand it that app's threshold: the failure
  this policy exists to prevent). A new criterion of a known app takes the app's pooled rule.
- Evidence older than a segment's reset (``tighten`` after an alarm; carried from ``previous`` to every later
  policy) is ignored for that segment, so a segment that drifted is re-fitted from post-alarm evidence only.
- ``sample_rate_for(n)`` decays from ``max_sample_rate`` (thin evidence) to ``base_sample_rate`` as the segment's
  evidence ``n`` grows: base + (max - base) * min_evidence / (min_evidence + n). ``apply_budget`` scales the extra
  rate (above base) of every segment down by one factor so the expected extra frontier spend, given each segment's
  share of traffic, stays within the budget, and reports that spend.
- ``DriftDetector`` runs one Bernoulli CUSUM per rule segment (Steiner et al. 2000): each frontier-or-gold-checked
  verdict (census and sample alike) adds the log-likelihood ratio of "agreement odds fell by ``odds_ratio``"
  against the agreement the policy assumed at that confidence (the rule's bucket estimate where it has
  ``bucket_min_n`` items, else the confidence itself). Crossing ``h`` (default 8: measured, a drop to 40 % agreement
  among confident verdicts alarms within 20 traces, median 13) returns an ``Alarm`` and resets that
  segment's sum; segments that route everything are not tested (nothing is accepted there).
- ``validation_evidence(student_meta)`` is a judge version's own validation verdicts (``student.json``
  ``validation_evidence``, written by ``judgeline train``) as ``Evidence``: a teacher-labelled row counts as a
  frontier verdict, a human-labelled one as a gold label, each weighing 1, observed at ``VALIDATION_TIME`` (before
  any live evidence). It is where a new deployment's policy starts, live (``operations.route_policy``) and in the
  simulation (``judge_engine.evaluation.policy_sim``) alike; it covers the apps the version was trained on only.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence

from scipy.stats import beta

from judge_engine.online.routing import in_calibration_sample
from schemas import versioning
from schemas.verdict import RouteReason

ANY = "*"
GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(21))  # candidate thresholds 0.00 .. 1.00
_KINDS = ("pointwise", "pairwise")
_LABELS = ("A", "B", "tie", "pass", "fail")


# -- segments ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Segment:
    tenant: str
    app: str
    kind: str
    criterion: str

    def __post_init__(self) -> None:
        for name in ("tenant", "app", "kind", "criterion"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"segment.{name} must be a non-empty string ('*' for any), got {value!r}")
        if self.kind not in (*_KINDS, ANY):
            raise ValueError(f"segment.kind must be one of {_KINDS} or '*', got {self.kind!r}")

    @classmethod
    def of(cls, trace: Any) -> "Segment":
        """The fine segment of a ``schemas.trace.Trace`` (or anything with tenant, app, kind and criterion)."""
        return cls(trace.tenant, trace.app, trace.kind, trace.criterion)

    @classmethod
    def everything(cls) -> "Segment":
        return cls(ANY, ANY, ANY, ANY)

    @classmethod
    def parse(cls, text: str) -> "Segment":
        """``tenant/app/kind/criterion`` (the form ``str()`` writes: a '/' or '%' inside a part is %-escaped)."""
        parts = text.split("/")
        if len(parts) != 4:
            raise ValueError(f"segment must be 'tenant/app/kind/criterion' ('*' for any; '/' inside a part written "
                             f"%2F), got {text!r}")
        return cls(*(p.replace("%2F", "/").replace("%25", "%") for p in parts))

    def __str__(self) -> str:
        return "/".join(p.replace("%", "%25").replace("/", "%2F")
                        for p in (self.tenant, self.app, self.kind, self.criterion))

    def fallbacks(self) -> tuple["Segment", ...]:
        chain = [
            self,
            Segment(self.tenant, self.app, self.kind, ANY),
            Segment(self.tenant, ANY, self.kind, ANY),
            Segment(ANY, ANY, self.kind, ANY),
            Segment.everything(),
        ]
        out: list[Segment] = []
        for s in chain:
            if s not in out:
                out.append(s)
        return tuple(out)

    def matches(self, fine: "Segment") -> bool:
        """True when ``fine`` (a segment or a finer pattern) lies inside this pattern."""
        return all(p == ANY or p == f for p, f in zip(
            (self.tenant, self.app, self.kind, self.criterion), (fine.tenant, fine.app, fine.kind, fine.criterion)))

    def app_level(self) -> "Segment":
        return Segment(self.tenant, self.app, self.kind, ANY)


# -- rules and policies --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    segment: Segment
    threshold: float
    sample_rate: float
    route_all: bool
    reason: str
    evidence: dict = field(default_factory=dict, compare=True, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.segment, Segment):
            raise ValueError(f"rule.segment must be a Segment, got {type(self.segment).__name__}")
        _number("rule.threshold", self.threshold, 0.0, 2.0)
        _number("rule.sample_rate", self.sample_rate, 0.0, 1.0)
        if not isinstance(self.route_all, bool):
            raise ValueError(f"rule.route_all must be true or false, got {self.route_all!r}")
        if not isinstance(self.reason, str):
            raise ValueError(f"rule.reason must be a string, got {self.reason!r}")
        if not isinstance(self.evidence, dict):
            raise ValueError(f"rule.evidence must be an object, got {type(self.evidence).__name__}")

    @property
    def routes_everything(self) -> bool:
        return self.route_all or self.threshold > 1.0

    def accepts(self, confidence: float) -> bool:
        """True when a verdict at this confidence is above the threshold (it may still be sampled or novel)."""
        return not self.routes_everything and confidence >= self.threshold

    def route(self, confidence: float, trace_id: str, *, novel: bool = False) -> RouteReason | None:
        if self.routes_everything:
            return "route_all"
        if confidence < self.threshold:
            return "low_confidence"
        if novel:
            return "novel"
        if in_calibration_sample(trace_id, self.sample_rate):
            return "calibration_sample"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"segment": str(self.segment), "threshold": self.threshold, "sample_rate": self.sample_rate,
                "route_all": self.route_all, "reason": self.reason, "evidence": self.evidence}


@dataclass(frozen=True)
class Reset:
    """Evidence of ``segment`` observed before ``at`` no longer counts (an alarm, a new judge version)."""

    segment: Segment
    at: datetime
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"segment": str(self.segment), "at": self.at.isoformat(), "reason": self.reason}


@dataclass(frozen=True)
class RoutingPolicy:
    version: int
    created_at: datetime
    rules: tuple[Rule, ...]
    accepted_error_rate: float
    confidence_level: float
    resets: tuple[Reset, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or isinstance(self.version, bool) or self.version < 0:
            raise ValueError(f"policy.version must be a non-negative integer, got {self.version!r}")
        if not isinstance(self.created_at, datetime) or self.created_at.tzinfo is None:
            raise ValueError("policy.created_at must be a timezone-aware datetime")
        _number("policy.accepted_error_rate", self.accepted_error_rate, 0.0, 1.0)
        _number("policy.confidence_level", self.confidence_level, 0.0, 1.0, open_high=True)
        segments = [r.segment for r in self.rules]
        if len(set(segments)) != len(segments):
            raise ValueError("policy.rules must hold one rule per segment; a segment appears twice")
        if Segment.everything() not in segments:
            raise ValueError("policy.rules must include the '*/*/*/*' rule (the default for unseen segments)")
        object.__setattr__(self, "_by_segment", {r.segment: r for r in self.rules})

    def rule_for(self, segment: Segment) -> Rule:
        by_segment: dict[Segment, Rule] = self._by_segment  # type: ignore[attr-defined]
        for s in segment.fallbacks():
            if s in by_segment:
                return by_segment[s]
        raise AssertionError("unreachable: the '*/*/*/*' rule always exists")

    def with_rule(self, rule: Rule) -> "RoutingPolicy":
        others = tuple(r for r in self.rules if r.segment != rule.segment)
        return replace(self, rules=tuple(sorted(others + (rule,), key=lambda r: r.segment)))

    @classmethod
    def cold_start(cls, version: int = 0, *, created_at: datetime | None = None, accepted_error_rate: float = 0.05,
                   confidence_level: float = 0.95, sample_rate: float = 1.0) -> "RoutingPolicy":
        rule = Rule(Segment.everything(), 1.0, sample_rate, True, "cold_start", {"n": 0})
        return cls(version, created_at or datetime(1970, 1, 1, tzinfo=timezone.utc), (rule,), accepted_error_rate,
                   confidence_level)

    def to_json(self) -> bytes:
        body = {versioning.FIELD: versioning.current(), "version": self.version, "created_at": self.created_at.isoformat(),
                "accepted_error_rate": self.accepted_error_rate, "confidence_level": self.confidence_level,
                "rules": [r.to_dict() for r in self.rules], "resets": [r.to_dict() for r in self.resets]}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes | str) -> "RoutingPolicy":
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"policy: not valid JSON ({e}); send the bytes RoutingPolicy.to_json() writes") from e
        newer = _schema_version(body)
        obj = _fields(body, "policy", {"version", "created_at", "accepted_error_rate", "confidence_level", "rules"},
                      {"resets", versioning.FIELD}, newer)
        rules = obj["rules"]
        if not isinstance(rules, list):
            raise ValueError("policy.rules must be a list of rules")
        parsed = []
        for i, raw in enumerate(rules):
            where = f"policy.rules[{i}]"
            r = _fields(raw, where, {"segment", "threshold", "sample_rate", "route_all", "reason", "evidence"},
                        lenient=newer)
            try:
                parsed.append(Rule(_segment(r["segment"], f"{where}.segment"), r["threshold"], r["sample_rate"],
                                   r["route_all"], r["reason"], r["evidence"]))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from e
        resets = []
        for i, raw in enumerate(obj.get("resets", [])):
            where = f"policy.resets[{i}]"
            r = _fields(raw, where, {"segment", "at", "reason"}, lenient=newer)
            resets.append(Reset(_segment(r["segment"], f"{where}.segment"), _time(r["at"], f"{where}.at"),
                                str(r["reason"])))
        return cls(obj["version"], _time(obj["created_at"], "policy.created_at"), tuple(parsed),
                   obj["accepted_error_rate"], obj["confidence_level"], tuple(resets))


# -- evidence and the fit ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One inline verdict with a reference: the frontier's verdict (if the stream paid for one), a gold label (if
    a human gave one), and its weight in the estimate of the confident traffic."""

    segment: Segment
    confidence: float
    inline_label: str
    frontier_label: str | None
    gold_label: str | None
    weight: float
    observed_at: datetime

    @property
    def reference(self) -> str | None:
        return self.gold_label if self.gold_label is not None else self.frontier_label

    @property
    def agrees(self) -> bool | None:
        ref = self.reference
        return None if ref is None else ref == self.inline_label


def evidence_weight(route_reason: str | None, sample_rate: float) -> float:
    """The inverse inclusion probability: a calibration-sample trace stands for 1/rate confident traces; a routed
    trace below the threshold (or a novel one) was included with certainty."""
    if route_reason == "calibration_sample":
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1] for a calibration-sample trace, got {sample_rate!r}")
        return 1.0 / sample_rate
    return 1.0


def cp_upper(errors: float, n: float, confidence_level: float) -> float:
    """One-sided Clopper-Pearson upper bound on a binomial rate after ``errors`` in ``n`` (both may be fractional:
    effective counts); 1.0 when n is 0 or every item erred."""
    if n <= 0 or errors >= n:
        return 1.0
    return float(beta.ppf(confidence_level, errors + 1.0, n - errors))


def kish_n(weights: Sequence[float]) -> float:
    total = sum(weights)
    squares = sum(w * w for w in weights)
    return 0.0 if squares == 0 else total * total / squares


def sample_rate_for(segment_evidence_n: float, *, base_sample_rate: float, max_sample_rate: float,
                    min_evidence: int) -> float:
    """The calibration sample rate of a segment with ``segment_evidence_n`` checked items: ``max_sample_rate`` with
    none, half-way at ``min_evidence``, tending to ``base_sample_rate``."""
    if not 0.0 <= base_sample_rate <= max_sample_rate <= 1.0:
        raise ValueError("sample rates must satisfy 0 <= base_sample_rate <= max_sample_rate <= 1")
    n = max(0.0, float(segment_evidence_n))
    return base_sample_rate + (max_sample_rate - base_sample_rate) * min_evidence / (min_evidence + n)


@dataclass(frozen=True)
class _Fit:
    threshold: float | None
    summary: dict[str, Any]


def _fit_threshold(items: Sequence[Evidence], accepted_error_rate: float, confidence_level: float) -> _Fit:
    """The lowest grid threshold whose accepted set's CP upper bound on error is within the accepted rate."""
    rows = sorted(((e.confidence, e.weight, 0.0 if e.agrees else 1.0) for e in items), reverse=True)
    n = len(rows)
    buckets = []
    for lo, hi in zip(GRID[:-1], GRID[1:]):
        inside = [r for r in rows if lo <= r[0] < hi or (hi == 1.0 and r[0] == 1.0)]
        if inside:
            w = sum(r[1] for r in inside)
            buckets.append({"lo": lo, "hi": hi, "n": len(inside),
                            "agreement": round(1.0 - sum(r[1] * r[2] for r in inside) / w, 4)})
    chosen: float | None = None
    best: dict[str, Any] = {}
    for t in GRID:
        acc = [r for r in rows if r[0] >= t]
        if not acc:
            break
        weights = [r[1] for r in acc]
        total = sum(weights)
        err = sum(r[1] * r[2] for r in acc) / total
        n_eff = kish_n(weights)
        bound = cp_upper(err * n_eff, n_eff, confidence_level)
        if bound <= accepted_error_rate:
            chosen = t
            best = {"accepted_n": len(acc), "accepted_n_eff": round(n_eff, 2),
                    "agreement_above_threshold": round(1.0 - err, 4), "error_upper_bound": round(bound, 4)}
            break
    summary = {"n": n, "n_eff": round(kish_n([r[1] for r in rows]), 2), "buckets": buckets, **best}
    if chosen is None:
        top = [r for r in rows if r[0] >= GRID[-2]] or rows
        w = [r[1] for r in top]
        err = sum(r[1] * r[2] for r in top) / sum(w) if top else 1.0
        summary["error_upper_bound"] = round(cp_upper(err * kish_n(w), kish_n(w), confidence_level), 4)
    return _Fit(chosen, summary)


def fit_policy(evidence: Iterable[Evidence], *, previous: RoutingPolicy | None, accepted_error_rate: float,
               min_evidence: int, confidence_level: float = 0.95, base_sample_rate: float,
               max_sample_rate: float, version: int, now: datetime) -> RoutingPolicy:
    """A new policy from the evidence (see the module contract)."""
    if min_evidence < 1:
        raise ValueError(f"min_evidence must be at least 1, got {min_evidence!r}")
    resets = previous.resets if previous is not None else ()
    usable = [e for e in evidence if e.reference is not None and not _is_reset(e, resets)]
    by_fine: dict[Segment, list[Evidence]] = defaultdict(list)
    by_app: dict[Segment, list[Evidence]] = defaultdict(list)
    for e in usable:
        by_fine[e.segment].append(e)
        by_app[e.segment.app_level()].append(e)

    def rule(segment: Segment, items: list[Evidence], pooled_from: Segment | None) -> Rule:
        rate_n = len(items)
        if len(items) < min_evidence:
            fit = _Fit(None, {"n": len(items), "n_eff": round(kish_n([e.weight for e in items]), 2)})
            reason = "too_little_evidence"
        else:
            fit = _fit_threshold(items, accepted_error_rate, confidence_level)
            reason = "fitted" if fit.threshold is not None else "bound_not_met"
            if fit.threshold is not None:
                rate_n = sum(1 for e in items if e.confidence >= fit.threshold)
        summary = dict(fit.summary)
        if pooled_from is not None:
            summary["pooled_from"] = str(pooled_from)
        rate = sample_rate_for(rate_n, base_sample_rate=base_sample_rate, max_sample_rate=max_sample_rate,
                               min_evidence=min_evidence)
        if fit.threshold is None:
            return Rule(segment, 1.0, max_sample_rate, True, reason, summary)
        return Rule(segment, fit.threshold, round(rate, 6), False, reason, summary)

    rules: dict[Segment, Rule] = {}
    for app_seg, items in by_app.items():
        rules[app_seg] = rule(app_seg, items, None)
    for fine, items in by_fine.items():
        if fine == fine.app_level():
            continue
        if len(items) >= min_evidence:
            rules[fine] = rule(fine, items, None)
        # else: the fine segment falls back to its app-level rule through rule_for
    for s in {x for seg in rules for x in seg.fallbacks()[2:]} | {Segment.everything()}:
        rules[s] = Rule(s, 1.0, max_sample_rate, True, "unseen_segment", {"n": 0})
    ordered = tuple(sorted(rules.values(), key=lambda r: r.segment))
    return RoutingPolicy(version, now, ordered, accepted_error_rate, confidence_level, resets)


def _is_reset(e: Evidence, resets: Sequence[Reset]) -> bool:
    return any(r.segment.matches(e.segment) and e.observed_at < r.at for r in resets)


def tighten(policy: RoutingPolicy, segment: Segment, *, at: datetime, reason: str = "drift_alarm",
            version: int | None = None, max_sample_rate: float = 1.0) -> RoutingPolicy:
    """Route ``segment`` entirely from now on and forget its evidence before ``at`` (it is re-fitted from what comes
    after the alarm). Finer rules inside ``segment`` are tightened too."""
    evidence = {"n": 0, "alarm_at": at.isoformat()}
    tightened = policy.with_rule(Rule(segment, 1.0, max_sample_rate, True, reason, evidence))
    for inner in [r for r in tightened.rules if r.segment != segment and segment.matches(r.segment)]:
        tightened = tightened.with_rule(Rule(inner.segment, 1.0, max_sample_rate, True, reason, evidence))
    return replace(tightened, version=policy.version + 1 if version is None else version, created_at=at,
                   resets=policy.resets + (Reset(segment, at, reason),))


def apply_budget(policy: RoutingPolicy, traffic_share: Mapping[Segment, float], *, base_sample_rate: float,
                 extra_budget: float) -> tuple[RoutingPolicy, float]:
    """Scale every accepting rule's extra sample rate (its rate above ``base_sample_rate``) by one factor so that
    the expected extra frontier fraction, sum over segments of share * extra rate of the rule that governs it, is at
    most ``extra_budget``. Returns the policy and the extra fraction it spends."""
    extra_by_rule: dict[Segment, float] = defaultdict(float)
    for seg, share in traffic_share.items():
        r = policy.rule_for(seg)
        if not r.routes_everything:
            extra_by_rule[r.segment] += share * max(0.0, r.sample_rate - base_sample_rate)
    spend = sum(extra_by_rule.values())
    if spend <= extra_budget or spend == 0:
        return policy, spend
    factor = extra_budget / spend
    rules = tuple(replace(r, sample_rate=round(base_sample_rate + (r.sample_rate - base_sample_rate) * factor, 6))
                  if r.segment in extra_by_rule else r for r in policy.rules)
    return replace(policy, rules=rules), extra_budget


# -- drift ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    segment: Segment
    at: datetime
    statistic: float
    observations: int
    observed_agreement: float
    expected_agreement: float
    policy_version: int


class DriftDetector:
    """One Bernoulli CUSUM per rule segment against the agreement the current policy assumed (module contract)."""

    def __init__(self, policy: RoutingPolicy, *, odds_ratio: float = 3.0, h: float = 8.0,
                 bucket_min_n: int = 20) -> None:
        if odds_ratio <= 1.0 or h <= 0:
            raise ValueError("odds_ratio must exceed 1 and h must be positive")
        self.policy = policy
        self.odds_ratio = odds_ratio
        self.h = h
        self.bucket_min_n = bucket_min_n
        self._state: dict[Segment, list[float]] = {}  # segment -> [S, count, agreed, expected sum]

    def set_policy(self, policy: RoutingPolicy) -> None:
        self.policy = policy

    def expected_agreement(self, rule: Rule, confidence: float) -> float:
        for b in rule.evidence.get("buckets", ()):
            if b["lo"] <= confidence < b["hi"] or (b["hi"] == 1.0 and confidence == 1.0):
                if b["n"] >= self.bucket_min_n:
                    return float(b["agreement"])
                break
        return float(confidence)

    def update(self, evidence: Evidence) -> Alarm | None:
        agrees = evidence.agrees
        if agrees is None:
            return None
        rule = self.policy.rule_for(evidence.segment)
        if rule.routes_everything:
            return None
        p0 = min(0.99, max(0.01, self.expected_agreement(rule, evidence.confidence)))
        odds1 = p0 / (1.0 - p0) / self.odds_ratio
        p1 = odds1 / (1.0 + odds1)
        llr = math.log(p1 / p0) if agrees else math.log((1.0 - p1) / (1.0 - p0))
        st = self._state.setdefault(rule.segment, [0.0, 0.0, 0.0, 0.0])
        st[0] = max(0.0, st[0] + llr)
        st[1] += 1
        st[2] += 1.0 if agrees else 0.0
        st[3] += p0
        if st[0] < self.h:
            return None
        alarm = Alarm(rule.segment, evidence.observed_at, round(st[0], 3), int(st[1]), st[2] / st[1],
                      st[3] / st[1], self.policy.version)
        del self._state[rule.segment]
        return alarm


# -- strict parsing helpers ----------------------------------------------------------------------------------------


def _number(name: str, value: Any, lo: float, hi: float, *, open_high: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < lo or value > hi or (open_high and value >= hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}{')' if open_high else ']'}, got {value!r}")


def _schema_version(body: Any) -> bool:
    """Whether the policy JSON is of a newer minor (lenient); raises ValueError for one this release cannot read."""
    if not isinstance(body, dict):
        return False  # _fields says what is wrong
    try:
        return versioning.check(body.get(versioning.FIELD, versioning.ABSENT_MEANS))
    except versioning.VersionError as e:
        raise ValueError(f"policy.{versioning.FIELD}: {e}") from None


def _fields(raw: Any, where: str, required: set[str], optional: set[str] = frozenset(),
            lenient: bool = False) -> dict[str, Any]:
    """``raw`` as an object with the fields named; an unknown field is an error unless ``lenient`` (a newer minor
    schema version: it is ignored)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(raw).__name__}")
    missing = sorted(required - raw.keys())
    if missing:
        raise ValueError(f"{where}.{missing[0]} is missing; write it (see RoutingPolicy.to_json)")
    unknown = sorted(raw.keys() - required - optional)
    if unknown and lenient:
        return {k: v for k, v in raw.items() if k in required or k in optional}
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a policy field; remove it")
    return raw


def _segment(raw: Any, where: str) -> Segment:
    if not isinstance(raw, str):
        raise ValueError(f"{where} must be a string 'tenant/app/kind/criterion', got {raw!r}")
    try:
        return Segment.parse(raw)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def _time(raw: Any, where: str) -> datetime:
    try:
        t = datetime.fromisoformat(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} must be an ISO-8601 time with a UTC offset, got {raw!r}") from e
    if t.tzinfo is None:
        raise ValueError(f"{where} must carry a UTC offset, got {raw!r}")
    return t


VALIDATION_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)


def validation_evidence(student_meta: dict, *, tenant: str = "default",
                        at: datetime = VALIDATION_TIME) -> list[Evidence]:
    """The judge version's validation verdicts (``student.json`` ``validation_evidence``) as policy evidence:
    a teacher-labelled row is a frontier verdict, a human-labelled one a gold label; every row weighs 1."""
    rows = student_meta.get("validation_evidence") or []
    out = []
    for r in rows:
        human = r.get("reference_source") == "human"
        out.append(Evidence(Segment(tenant, r["app"], r["kind"], r["criterion"]), float(r["confidence"]), r["label"],
                            None if human else r["reference"], r["reference"] if human else None, 1.0,
                            at - timedelta(seconds=1)))
    return out
