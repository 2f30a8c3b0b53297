"""Every SQL statement the project builds interpolates identifiers only; values travel as parameters.

A static check over the source: any f-string whose text contains SQL keywords may interpolate only names of
identifiers that come from validated settings (the database, a table, a format name), module constants (column
lists), module-private SQL fragments
(``_window()``, ``_JOINED``: constant text with ``{name:Type}`` server-side parameters) and the escaped internals of
the embedded store server. Rows are written with clickhouse-connect's typed ``insert`` (``streams/sink.py``), never as
SQL text; ``tests/streams/test_hostile_traffic.py`` shows hostile strings round-trip byte for byte through it.
"""

import ast
import re

from tests_support import REPO_ROOT

PACKAGES = ("stack", "operations", "doubles", "cli", "judge_engine", "streams", "schemas", "benchmarks")
SQL_WORDS = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|ALTER|DROP|CREATE|USE|FROM|WHERE|INTO|TABLE|DATABASE|OPTIMIZE|"
                       r"TRUNCATE|VALUES)\b")
IDENTIFIER = re.compile(r"^(self\.)?(settings\.clickhouse\.)?(database|db|table|MIGRATIONS_TABLE|fmt)$")
CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")  # module constants (column and table names), never message data
EXCEPTIONS = {
    ("stack/store_server.py", "database.replace('`', '')"),  # USE `<database>`: backticks removed
    ("stack/store_server.py", "quoted"),  # the server's own temporary file name, quotes escaped
    ("judge_engine/training/embedding_cache.py", "','.join('?' * len(chunk))"),  # sqlite placeholders, values bound
}


def _interpolations():
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            rel = str(path.relative_to(REPO_ROOT))
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if not isinstance(node, ast.JoinedStr):
                    continue
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    for v in node.values:
                        if isinstance(v, ast.FormattedValue):
                            yield rel, node.lineno, ast.unparse(v.value)


def _allowed(rel: str, expr: str) -> bool:
    if IDENTIFIER.match(expr) or expr.lstrip().startswith("_") or (rel, expr) in EXCEPTIONS:
        return True
    names = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
    return bool(names) and all(CONSTANT.fullmatch(n) for n in names)  # e.g. ', '.join(COLUMNS['verdicts'])


def test_sql_text_interpolates_identifiers_only():
    found = list(_interpolations())
    assert any(expr == "database" for _, _, expr in found), "the check should see the migrations' SQL"
    bad = [f"{rel}:{line}: {{{expr}}}" for rel, line, expr in found if not _allowed(rel, expr)]
    assert bad == [], ("SQL built with interpolated values; pass values as server-side parameters "
                       "({name:Type} with parameters=...) or insert typed rows: " + "; ".join(bad))


def test_the_check_catches_a_value_in_sql():
    assert not _allowed("operations/x.py", "trace_id") and not _allowed("operations/x.py", "message.tenant")
    assert not _allowed("operations/x.py", "', '.join(values)")
    assert _allowed("operations/x.py", "self.database") and _allowed("schemas/analytics_sql.py", "_window('v')")
    assert _allowed("streams/sink.py", "', '.join(COLUMNS['verdicts'])")
