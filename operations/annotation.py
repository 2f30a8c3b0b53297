"""The annotation queue: which routed traces a person should label next, their labels as gold, and how much people
agree. The web page (``operations/annotate_web.py``) is a thin face over this module.

Contract:
- Candidates are the traces stored with their text (``traces``: every trace routed to the frontier) joined to their
  inline verdict (one per trace since ``verdicts`` is keyed by the trace: the newest judge version's) and their ok
  frontier verdict (any frontier judge: the newest). ``POLICIES``:
  ``mixed`` (the default) puts disagreements (inline label != frontier label) first, then low-confidence traces
  (lowest confidence first), then the uniform sample (the calibration sample, and the traces a policy routes
  whole, ``route_all``: both uniform slices of the traffic, in a hash order that is a uniform shuffle), then the
  other routed traces (novel, forced, judge unavailable); ``disagreements``, ``low_confidence`` and ``sample``
  take only that group. Optional filters: tenant, app,
  criterion ('' for all). A trace the annotator has already labelled is not offered again; a trace someone else
  labelled is (two people's labels are what agreement is measured on).
- ``next_items(client, db, annotator, policy, ..., limit)`` returns ``QueueItem``s: the trace as a person needs it
  (question, answer or answers A/B, reference, context) and, separately, the verdicts (``reveal``), which the page
  shows only after the person answered.
- ``record_label(store, item, annotator, label, note)`` writes a ``GoldLabel``: id = the trace id, source
  ``annotation:<annotator>``, the trace's kind/criterion/text, ``human_label``, and ``meta`` with the annotator,
  note, time (UTC) and the trace's tenant/app. Two annotators' labels of one trace are two rows; the same person
  labelling again replaces their own. ``gold_by_id`` (what ``judgeline calibrate`` reads, joining on the trace id)
  takes the newest label of a trace. The label must fit the kind (A/B/tie or pass/fail), else ``ValueError``
  naming it; the annotator name is 1-64 characters of letters, digits, ``._-@`` and spaces.
- ``agreement(client, db)`` reports, over the traces labelled by two people or more: how many, the share of
  agreeing pairs of labels, and a chance-corrected kappa (Fleiss-style: expected agreement from the pooled label
  distribution), overall and per criterion.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Any

from schemas.base import utc_now
from schemas.gold import GoldLabel

POLICIES = ("mixed", "disagreements", "low_confidence", "sample")
SOURCE_PREFIX = "annotation:"
_ANNOTATOR = re.compile(r"^[\w.@ -]{1,64}$")

_GROUP = """multiIf(f.label != '' AND f.label != v.label, 0, v.route_reason = 'low_confidence', 1,
                   v.route_reason IN ('calibration_sample', 'route_all'), 2, 3)"""
QUEUE_SQL = f"""
SELECT t.trace_id AS trace_id, t.tenant AS tenant, t.app AS app, t.kind AS kind, t.criterion AS criterion,
       t.question AS question, t.answer AS answer, t.answer_a AS answer_a, t.answer_b AS answer_b,
       t.reference AS reference, t.context AS context, t.model AS model,
       v.label AS inline_label, v.confidence AS inline_confidence, v.judge_name AS inline_judge,
       v.judge_version AS inline_version, v.route_reason AS route_reason,
       f.label AS frontier_label, f.judge_name AS frontier_judge, f.critique AS frontier_critique,
       {_GROUP} AS grp
FROM {{db}}.traces AS t FINAL
INNER JOIN (SELECT trace_id, tenant, app, criterion, label, confidence, judge_name, judge_version, route_reason
            FROM {{db}}.verdicts_latest WHERE source = 'inline') AS v
    ON v.trace_id = t.trace_id AND v.tenant = t.tenant AND v.app = t.app AND v.criterion = t.criterion
LEFT JOIN (SELECT trace_id, tenant, app, criterion, argMax(label, judged_at) AS label,
                  argMax(judge_name, judged_at) AS judge_name, argMax(critique, judged_at) AS critique
           FROM {{db}}.frontier_verdicts_latest WHERE status = 'ok'
           GROUP BY trace_id, tenant, app, criterion) AS f
    ON f.trace_id = t.trace_id AND f.tenant = t.tenant AND f.app = t.app AND f.criterion = t.criterion
WHERE ({{tenant:String}} = '' OR t.tenant = {{tenant:String}})
  AND ({{app:String}} = '' OR t.app = {{app:String}})
  AND ({{criterion:String}} = '' OR t.criterion = {{criterion:String}})
  AND ({{trace_id:String}} = '' OR t.trace_id = {{trace_id:String}})
  AND (t.trace_id, t.criterion) NOT IN (SELECT id, criterion FROM {{db}}.gold_labels_latest
                                        WHERE source = {{source:String}})
  AND ({{policy:String}} = 'mixed' OR grp = indexOf(['disagreements', 'low_confidence', 'sample'],
                                                    {{policy:String}}) - 1)
ORDER BY grp, if(grp = 1, v.confidence, 0), cityHash64(t.trace_id)
LIMIT {{limit:UInt32}}"""

LABELS_SQL = f"""
SELECT id, criterion, source, human_label
FROM {{db}}.gold_labels_latest
WHERE startsWith(source, '{SOURCE_PREFIX}') AND human_label != ''"""


@dataclass(frozen=True)
class QueueItem:
    trace_id: str
    tenant: str
    app: str
    kind: str
    criterion: str
    question: str
    answer: str | None
    answer_a: str | None
    answer_b: str | None
    reference: str | None
    context: str | None
    model: str
    group: str
    reveal: dict[str, Any]

    def shown(self) -> dict[str, Any]:
        """What the page shows before the person answers: the trace, never the verdicts."""
        out = asdict(self)
        out.pop("reveal")
        return out


GROUPS = ("disagreement", "low_confidence", "sample", "other")


def check_annotator(name: str) -> str:
    name = (name or "").strip()
    if not _ANNOTATOR.match(name):
        raise ValueError("annotator: give your name (1-64 letters, digits, spaces or ._-@) so that your labels "
                         "can be told apart from other people's")
    return name


def next_items(client: Any, database: str, annotator: str, policy: str = "mixed", *, tenant: str = "",
               app: str = "", criterion: str = "", limit: int = 1) -> list[QueueItem]:
    if policy not in POLICIES:
        raise ValueError(f"policy: {policy!r} is not one of {', '.join(POLICIES)}")
    return _query(client, database, {"tenant": tenant, "app": app, "criterion": criterion, "policy": policy,
                                     "limit": int(limit), "source": SOURCE_PREFIX + check_annotator(annotator),
                                     "trace_id": ""})


def find_item(client: Any, database: str, trace_id: str, criterion: str) -> QueueItem | None:
    """One trace's queue item (to record a label for it), labelled already or not, or None when unknown."""
    items = _query(client, database, {"tenant": "", "app": "", "criterion": criterion, "policy": "mixed",
                                      "limit": 1, "source": "", "trace_id": trace_id})
    return items[0] if items else None


def _query(client: Any, database: str, params: dict[str, Any]) -> list[QueueItem]:
    result = client.query(QUEUE_SQL.replace("{db}", database), parameters=params)
    items = []
    for r in result.named_results():
        reveal = {"inline": {"label": r["inline_label"], "confidence": round(float(r["inline_confidence"]), 4),
                             "judge": f"{r['inline_judge']} v{r['inline_version']}", "route_reason": r["route_reason"]},
                  "frontier": ({"label": r["frontier_label"], "judge": r["frontier_judge"],
                                "critique": r["frontier_critique"] or None} if r["frontier_label"] else None)}
        items.append(QueueItem(
            trace_id=r["trace_id"], tenant=r["tenant"], app=r["app"], kind=r["kind"], criterion=r["criterion"],
            question=r["question"], answer=r["answer"], answer_a=r["answer_a"], answer_b=r["answer_b"],
            reference=r["reference"], context=r["context"], model=r["model"], group=GROUPS[int(r["grp"])],
            reveal=reveal))
    return items


def gold_label(item: QueueItem, annotator: str, label: str, note: str = "") -> GoldLabel:
    annotator = check_annotator(annotator)
    meta = {"annotator": annotator, "note": note.strip()[:4000], "labelled_at": utc_now().isoformat(),
            "tenant": item.tenant, "app": item.app, "queue_group": item.group}
    try:
        return GoldLabel(id=item.trace_id, source=SOURCE_PREFIX + annotator, kind=item.kind, criterion=item.criterion,
                         question=item.question, answer=item.answer, answer_a=item.answer_a, answer_b=item.answer_b,
                         reference=item.reference, human_label=label, meta=meta)
    except ValueError as e:
        allowed = "A, B or tie" if item.kind == "pairwise" else "pass or fail"
        raise ValueError(f"label: {label!r} does not fit a {item.kind} trace; choose {allowed}") from e


def record_label(store: Any, item: QueueItem, annotator: str, label: str, note: str = "") -> GoldLabel:
    gold = gold_label(item, annotator, label, note)
    store.insert_sync("gold_labels", [gold])
    return gold


def agreement(client: Any, database: str) -> dict[str, Any]:
    labels: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for trace_id, criterion, source, label in client.query(LABELS_SQL.replace("{db}", database)).result_rows:
        labels[(trace_id, criterion)][source] = label
    return {"overall": _kappa([v for v in labels.values()]),
            "by_criterion": {c: _kappa([v for (t, crit), v in labels.items() if crit == c])
                             for c in sorted({c for _, c in labels})},
            "annotators": sorted({s.removeprefix(SOURCE_PREFIX) for v in labels.values() for s in v})}


def _kappa(items: list[dict[str, str]]) -> dict[str, Any]:
    shared = [list(v.values()) for v in items if len(v) >= 2]
    pairs = [(a, b) for labels in shared for a, b in combinations(labels, 2)]
    out: dict[str, Any] = {"traces_labelled": len(items), "traces_with_two_or_more": len(shared),
                           "pairs": len(pairs), "agreement": None, "kappa": None}
    if not pairs:
        return out
    observed = sum(a == b for a, b in pairs) / len(pairs)
    pooled = Counter(label for labels in shared for label in labels)
    total = sum(pooled.values())
    expected = sum((n / total) ** 2 for n in pooled.values())
    out["agreement"] = round(observed, 4)
    out["kappa"] = None if expected >= 1 else round((observed - expected) / (1 - expected), 4)
    return out
