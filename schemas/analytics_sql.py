"""The analytics queries, as text: what ``judgeline report`` and ``judgeline calibrate`` run (``operations/analytics.py``)
and what ``docs/analytics.md`` documents for users to run themselves.

Contract:
- Text only, no I/O. ``{db}`` is the configured database (a validated identifier, substituted by ``render``); every
  value is a ClickHouse query parameter (``{name:Type}``) bound by the client, never text pasted into the SQL.
- ``DEAD_LETTERS`` (the report's headline) reads ``dead_letters_latest`` in the window on the message's time; dead
  letters have no tenant, so it ignores the tenant.
- Every query reads the ``*_latest`` views (``FINAL``: a redelivered row counts once) and the window
  ``{since:DateTime64(3)} <= trace_time < {until:DateTime64(3)}`` on the trace's own time (the tables' partition
  key), optionally one tenant (``{tenant:String}``, '' for all).
- Inline verdicts join their trace's frontier verdict on (trace_id, tenant, app, criterion) for one frontier judge
  (``{judge:String}``) and the gold label on (trace id without ``{id_prefix:String}``, criterion) through
  ``gold_by_id``: a trace streamed from a gold file has the item's id as its trace id (``Trace.from_gold``).
- Disagreement means the ok frontier verdict's label differs from the inline verdict's label (both judged the same
  trace; the inline version is the verdict's own, so a new judge version is compared with the frontier afresh).
- A trace has one verdict (``verdicts`` is keyed by the trace since migration 7: the newest judgement wins), so the
  per-version figures count each trace once, under the version that judged it last; a trace judged again after a
  deploy (a redelivery) moves to the new version. The superseded verdicts of a store migrated with data stay in
  ``verdicts_by_version_v1``, which no query here reads.
"""

from __future__ import annotations

WINDOW_PARAMS = ("since", "until", "tenant")


def _window(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    return (f"{a}trace_time >= {{since:DateTime64(3)}} AND {a}trace_time < {{until:DateTime64(3)}} "
            f"AND ({{tenant:String}} = '' OR {a}tenant = {{tenant:String}})")


_FRONTIER = """(SELECT trace_id, tenant, app, criterion, status, label, cost_usd, input_tokens + output_tokens AS tokens,
         attempts, latency_ms
     FROM {db}.frontier_verdicts_latest WHERE judge_name = {judge:String})"""

_JOINED = f"""{{db}}.verdicts_latest AS v
LEFT JOIN {_FRONTIER} AS f
    ON f.trace_id = v.trace_id AND f.tenant = v.tenant AND f.app = v.app AND f.criterion = v.criterion"""

# -- calibration ---------------------------------------------------------------------------------------------------

JUDGE_VERSIONS = f"""
-- inline judge versions per criterion in the window, newest (last verdict judged) first
SELECT criterion, kind, judge_version, count() AS verdicts, max(judged_at) AS last_judged
FROM {{db}}.verdicts_latest
WHERE source = 'inline' AND {_window()}
GROUP BY criterion, kind, judge_version
ORDER BY criterion, kind, last_judged DESC"""

CALIBRATION_ROWS = f"""
-- one row per inline verdict: its frontier verdict (any status) and its gold label, where they exist
SELECT v.criterion AS criterion, v.kind AS kind, v.judge_version AS judge_version, v.label AS inline_label,
       v.confidence AS confidence, v.route_reason AS route_reason, f.trace_id != '' AS has_frontier,
       f.status AS frontier_status, f.label AS frontier_label, f.cost_usd AS frontier_cost_usd,
       f.tokens AS frontier_tokens, g.human_label AS human_label
FROM {_JOINED}
LEFT JOIN {{db}}.gold_by_id AS g
    ON g.id = substring(v.trace_id, length({{id_prefix:String}}) + 1) AND g.criterion = v.criterion
WHERE v.source = 'inline' AND startsWith(v.trace_id, {{id_prefix:String}}) AND {_window('v')}"""

# -- the report ----------------------------------------------------------------------------------------------------

VERDICT_RATES = f"""
-- verdicts and fail rates by period, app, model and criterion
SELECT toStartOfInterval(trace_time, toIntervalSecond({{step_s:UInt32}})) AS period, app, model, criterion, kind,
       count() AS verdicts,
       countIf(label = 'fail') / nullIf(countIf(label IN ('pass', 'fail')), 0) AS fail_rate,
       countIf(label = 'B') / nullIf(countIf(label IN ('A', 'B', 'tie')), 0) AS b_rate,
       countIf(label = 'tie') / nullIf(countIf(label IN ('A', 'B', 'tie')), 0) AS tie_rate,
       avg(confidence) AS mean_confidence
FROM {{db}}.verdicts_latest
WHERE {_window()}
GROUP BY period, app, model, criterion, kind
ORDER BY period, app, model, criterion, kind"""

ROUTING = f"""
-- routed fraction by period and criterion, by reason
SELECT toStartOfInterval(trace_time, toIntervalSecond({{step_s:UInt32}})) AS period, criterion,
       count() AS verdicts,
       countIf(route_reason != '') / count() AS routed_fraction,
       countIf(route_reason = 'low_confidence') AS low_confidence,
       countIf(route_reason = 'calibration_sample') AS calibration_sample,
       countIf(route_reason = 'route_all') AS route_all, countIf(route_reason = 'novel') AS novel,
       countIf(route_reason NOT IN ('', 'low_confidence', 'calibration_sample', 'route_all', 'novel')) AS other_reasons
FROM {{db}}.verdicts_latest
WHERE source = 'inline' AND {_window()}
GROUP BY period, criterion
ORDER BY period, criterion"""

FRONTIER_SPEND = f"""
-- frontier calls, tokens and spend by period, criterion and frontier judge
SELECT toStartOfInterval(trace_time, toIntervalSecond({{step_s:UInt32}})) AS period, criterion, judge_name,
       count() AS frontier_verdicts, countIf(status = 'ok') AS ok, sum(attempts) AS calls,
       sum(input_tokens + output_tokens) AS tokens, sum(cost_usd) AS cost_usd
FROM {{db}}.frontier_verdicts_latest
WHERE {_window()}
GROUP BY period, criterion, judge_name
ORDER BY period, criterion, judge_name"""

DISAGREEMENT_BY_BUCKET = f"""
-- inline vs frontier disagreement by confidence bucket and inline judge version
SELECT v.criterion AS criterion, v.judge_version AS judge_version,
       least(floor(v.confidence * {{buckets:UInt8}}), {{buckets:UInt8}} - 1) / {{buckets:UInt8}} AS bucket,
       count() AS traffic, countIf(f.status = 'ok') AS observed,
       countIf(f.status = 'ok' AND f.label != v.label) AS disagreements,
       disagreements / nullIf(observed, 0) AS disagreement_rate
FROM {_JOINED}
WHERE v.source = 'inline' AND {_window('v')}
GROUP BY criterion, judge_version, bucket
ORDER BY criterion, judge_version, bucket"""

DRIFT = f"""
-- disagreement over time per judge version; the calibration sample is the unbiased view of the accepted verdicts
SELECT toStartOfInterval(v.trace_time, toIntervalSecond({{step_s:UInt32}})) AS period, v.criterion AS criterion,
       v.judge_version AS judge_version, v.route_reason AS route_reason,
       countIf(f.status = 'ok') AS observed,
       countIf(f.status = 'ok' AND f.label != v.label) AS disagreements,
       disagreements / nullIf(observed, 0) AS disagreement_rate
FROM {_JOINED}
WHERE v.source = 'inline' AND v.route_reason != '' AND {_window('v')}
GROUP BY period, criterion, judge_version, route_reason
ORDER BY period, criterion, judge_version, route_reason"""

LATENCY = f"""
-- latency percentiles (ms): the inline judge per version, produce -> stored per version
SELECT judge_version, count() AS verdicts,
       quantilesExact(0.5, 0.95, 0.99)(latency_ms) AS judge_ms,
       quantilesExactIf(0.5, 0.95, 0.99)(toFloat64(dateDiff('millisecond', produced_at, stored_at)),
                                         produced_at IS NOT NULL) AS produce_to_stored_ms
FROM {{db}}.verdicts_latest
WHERE source = 'inline' AND {_window()}
GROUP BY judge_version
ORDER BY judge_version"""

FRONTIER_LATENCY = f"""
-- latency percentiles (ms) of the frontier judge (all its attempts for one trace)
SELECT judge_name, count() AS frontier_verdicts, quantilesExact(0.5, 0.95, 0.99)(latency_ms) AS frontier_ms
FROM {{db}}.frontier_verdicts_latest
WHERE {_window()}
GROUP BY judge_name
ORDER BY judge_name"""

DEAD_LETTERS = """
-- dead letters by stage and source topic, on the message's own time (a dead letter has no tenant: all are counted)
SELECT stage, topic, count() AS dead_letters, max(received_at) AS last_received
FROM {db}.dead_letters_latest
WHERE message_time >= {since:DateTime64(3)} AND message_time < {until:DateTime64(3)}
GROUP BY stage, topic
ORDER BY dead_letters DESC, stage, topic"""

REPORT_QUERIES: dict[str, str] = {
    "verdict_rates": VERDICT_RATES,
    "routing": ROUTING,
    "frontier_spend": FRONTIER_SPEND,
    "disagreement_by_bucket": DISAGREEMENT_BY_BUCKET,
    "drift": DRIFT,
    "latency": LATENCY,
    "frontier_latency": FRONTIER_LATENCY,
}


# -- routing from live evidence (operations/route_policy.py, docs/routing.md) ----------------------------------------
# Not part of the report: the controller reads these since {since:DateTime64(3)} (judged_at of the inline verdict).

ROUTING_JUDGE_VERSION = """
-- the inline judge version that answered last: the policy is fitted on its verdicts only
SELECT judge_version FROM {db}.verdicts_latest
WHERE source = 'inline' AND judged_at >= {since:DateTime64(3)}
ORDER BY judged_at DESC LIMIT 1"""

ROUTING_EVIDENCE = """
-- every inline verdict of that version with a reference: the ok frontier verdict of {judge:String} and/or the gold
-- label; the route reason and sample rate it was routed under give its weight
SELECT v.trace_id AS trace_id, v.tenant AS tenant, v.app AS app, v.kind AS kind, v.criterion AS criterion,
       v.label AS inline_label, v.confidence AS confidence, v.route_reason AS route_reason,
       v.sample_rate AS sample_rate, v.judged_at AS judged_at, f.label AS frontier_label,
       f.judged_at AS frontier_at, g.human_label AS human_label
FROM {db}.verdicts_latest AS v
LEFT JOIN (SELECT trace_id, tenant, app, criterion, label, judged_at FROM {db}.frontier_verdicts_latest
           WHERE judge_name = {judge:String} AND status = 'ok') AS f
    ON f.trace_id = v.trace_id AND f.tenant = v.tenant AND f.app = v.app AND f.criterion = v.criterion
LEFT JOIN {db}.gold_by_id AS g ON g.id = v.trace_id AND g.criterion = v.criterion
WHERE v.source = 'inline' AND v.judge_version = {judge_version:String} AND v.judged_at >= {since:DateTime64(3)}
  AND (f.trace_id != '' OR g.id != '')
ORDER BY v.judged_at, v.trace_id"""

ROUTING_TRAFFIC = """
-- inline verdicts per fine segment: each segment's share of traffic (the adaptive sample's budget)
SELECT tenant, app, kind, criterion, count() AS verdicts FROM {db}.verdicts_latest
WHERE source = 'inline' AND judge_version = {judge_version:String} AND judged_at >= {since:DateTime64(3)}
GROUP BY tenant, app, kind, criterion"""

LATEST_POLICY = """
-- the newest stored routing policy of a scope
SELECT version, policy FROM {db}.routing_policies_latest WHERE scope = {scope:String}
ORDER BY version DESC LIMIT 1"""


def render(sql: str, database: str) -> str:
    return sql.replace("{db}", database)
