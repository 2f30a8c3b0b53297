"""The analytics SQL: documented verbatim in docs/analytics.md, reading only the FINAL views, values as parameters."""

import re

from tests_support import REPO_ROOT

from schemas.analytics_sql import (
    CALIBRATION_ROWS,
    JUDGE_VERSIONS,
    REPORT_QUERIES,
    SHADOW_COMPARISON,
    render,
)

ALL = {**REPORT_QUERIES, "calibration_rows": CALIBRATION_ROWS, "judge_versions": JUDGE_VERSIONS,
       "shadow_comparison": SHADOW_COMPARISON}


def test_the_documentation_shows_each_query_as_it_runs():
    doc = (REPO_ROOT / "docs" / "analytics.md").read_text()
    for name, sql in ALL.items():
        assert render(sql, "judgeline").strip() in doc, f"docs/analytics.md is out of date for {name}"


def test_queries_read_the_deduplicated_views_and_bind_every_value():
    for name, sql in ALL.items():
        tables = re.findall(r"\{db\}\.(\w+)", sql)
        assert tables and all(t.endswith("_latest") or t == "gold_by_id" for t in tables), (name, tables)
        assert "{since:DateTime64(3)}" in sql and "{tenant:String}" in sql, name
        assert "%(" not in sql and "'{" not in sql, name  # no client-side formatting, no quoted placeholders
