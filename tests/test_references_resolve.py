"""Every name the project's modules import from, or read off, another project module exists there.

A function moved between modules is caught here, not when the code path that uses it runs for the first time
(``make bench`` stopped at ``benchmarks.shift`` on ``policy_sim.validation_evidence``, moved to
``judge_engine.online.policy``: no test ran that line). Checked statically on every file, imports inside
functions included: ``from P import N`` (N is a submodule or an attribute of P) and ``alias.attr`` where the alias
is a project module bound by an import and never reassigned in the file.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "judge_engine", "streams", "stack", "operations", "doubles", "cli", "benchmarks")


def _module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name or name.startswith(f"{e.name}."):
            return None
        raise


def _bound_names(tree: ast.AST) -> set[str]:
    """Names the file binds other than by import (assignments, arguments, loop and with targets)."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound


def unresolved(source: str, where: str) -> list[str]:
    tree = ast.parse(source)
    aliases: dict[str, str] = {}
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] in PACKAGES:
            parent = _module(node.module)
            if parent is None:
                problems.append(f"{where}:{node.lineno}: no module {node.module}")
                continue
            for a in node.names:
                sub = _module(f"{node.module}.{a.name}") if a.name != "*" else None
                if sub is not None:
                    aliases[a.asname or a.name] = sub.__name__
                elif a.name != "*" and not hasattr(parent, a.name):
                    problems.append(f"{where}:{node.lineno}: {node.module} has no {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    if _module(a.name) is None:
                        problems.append(f"{where}:{node.lineno}: no module {a.name}")
                    elif a.asname:
                        aliases[a.asname] = a.name
    shadowed = _bound_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.value.id not in shadowed:
            module = importlib.import_module(aliases[node.value.id])
            if not hasattr(module, node.attr):
                problems.append(f"{where}:{node.lineno}: {aliases[node.value.id]} has no {node.attr}")
    return problems


def _files() -> list[Path]:
    return sorted(f for p in PACKAGES for f in (REPO / p).rglob("*.py"))


def test_every_project_reference_resolves():
    problems = [p for f in _files() for p in unresolved(f.read_text(), str(f.relative_to(REPO)))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("def main():\n    from judge_engine.evaluation import policy_sim\n    policy_sim.validation_evidence({})\n",
     "judge_engine.evaluation.policy_sim has no validation_evidence"),
    ("from judge_engine.online.policy import no_such_thing\n", "judge_engine.online.policy has no no_such_thing"),
    ("import judge_engine.no_such_module\n", "no module judge_engine.no_such_module"),
])
def test_a_moved_name_is_reported(source, expected):
    assert [p.split(": ", 1)[1] for p in unresolved(source, "x.py")] == [expected]


def test_a_reassigned_alias_is_not_checked():
    source = "from judge_engine.evaluation import metrics\nmetrics = {}\nmetrics.anything\n"
    assert unresolved(source, "x.py") == []
