"""A simulated next minor release of judgeline, for the rolling-upgrade test (tests/faults/test_rolling_upgrade.py).

Contract: put this directory first on a worker's PYTHONPATH and Python imports this module at start-up (``site``);
it changes the real code the worker then imports, exactly as the next minor release would be written:
- ``schemas.versioning.SCHEMA_VERSION`` is one minor higher (what the worker writes and reads as its own);
- ``Trace`` knows one more optional field, ``session_id`` (``SESSION_FIELD``), and so does everything built on it
  (``FrontierRequest.trace``, the sink's table models): the class is replaced right after ``schemas.trace`` runs,
  before any other module imports it;
- the sink does not store the new field (``NOT_STORED``: the release adds no column for it).
Nothing else changes: the worker runs the code of this checkout. Test-only; never imported by the project.
"""

import importlib.abc
import importlib.machinery
import sys

SESSION_FIELD = "session_id"


def _bump(module) -> None:
    major, minor = module.parse_version(module.SCHEMA_VERSION)
    module.SCHEMA_VERSION = f"{major}.{minor + 1}"


def _trace(module) -> None:
    base = module.Trace
    namespace = {"__module__": module.__name__, "__qualname__": "Trace",
                 "__annotations__": {SESSION_FIELD: "str | None"}, SESSION_FIELD: None}
    module.Trace = type(base)("Trace", (base,), namespace)


def _sink(module) -> None:
    module.NOT_STORED["traces"] = module.NOT_STORED.get("traces", frozenset()) | {SESSION_FIELD}
    model = module.TABLE_MODELS["traces"]
    module.COLUMNS["traces"] = tuple(n for n in model.model_fields if n not in module.NOT_STORED["traces"])


PATCHES = {"schemas.versioning": _bump, "schemas.trace": _trace, "streams.sink": _sink}


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Runs ``PATCHES[name](module)`` right after the module's own code, before anything else can import it."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module, run=run, patch=PATCHES[name]):
            run(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _PatchAfterImport())
