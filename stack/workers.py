"""Running stream workers (and the replay frontier) as local processes, for the demo, the benchmark and the tests.

Contract:
- ``settings_env(settings)`` is the environment (``JUDGELINE_*`` names, secrets in clear: it goes only to a child
  process) that makes ``Settings()`` in a child equal ``settings``: every leaf value set, None left to its default.
- ``start_worker(settings, role, name=...)`` starts ``judgeline worker <role>`` (``python -m cli.main``) with that
  environment plus a free web port, in its own session, logging to ``<state_dir>/logs/<name>.log``, and returns its
  ``ServiceRecord``; ``worker_ready`` is true once it has joined its consumer group and holds partitions
  (``/ready/``). Stop it with ``stack.process.stop(record)`` (by PID). ``wait_worker_ready`` waits for that, failing with the worker's log
  tail when the process dies first.
- ``wait_until(predicate, timeout_s)`` polls until the predicate is true (returns True) or the time is up (False).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import BaseModel, SecretStr

from schemas.settings import ENV_NESTED_DELIMITER, ENV_PREFIX, Settings
from stack import process


def _flatten(model: BaseModel, prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in type(model).model_fields:
        value: Any = getattr(model, name)
        key = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            out.update(_flatten(value, key + ENV_NESTED_DELIMITER))
        elif value is None:
            continue
        elif isinstance(value, SecretStr):
            out[key] = value.get_secret_value()
        elif isinstance(value, Path):
            out[key] = str(value.expanduser().resolve())  # the child runs in another directory
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


def settings_env(settings: Settings) -> dict[str, str]:
    return _flatten(settings, ENV_PREFIX)


def start_worker(settings: Settings, role: str, *, name: str | None = None, extra_args: tuple[str, ...] = (),
                 env: Mapping[str, str] | None = None) -> process.ServiceRecord:
    port = process.free_port(settings.stack.bind_host)
    child_env = {**settings_env(settings), "JUDGELINE_STREAM__WORKER_WEB_PORT": str(port), **(env or {})}
    command = [sys.executable, "-m", "cli.main", "worker", role, *extra_args]
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return process.start(name or f"worker-{role}", command, settings.state_dir, env=child_env,
                         cwd=Path(settings.state_dir), ports={"web": port})


def wait_worker_ready(settings: Settings, record: process.ServiceRecord, timeout_s: float = 90.0) -> None:
    """Wait until the worker holds partitions; raises ``ServiceError`` with its log tail if it dies first."""
    process.wait_healthy(record, lambda: worker_ready(settings, record), timeout_s)


def worker_ready(settings: Settings, record: process.ServiceRecord) -> bool:
    try:
        with urllib.request.urlopen(f"http://{settings.stack.bind_host}:{record.ports['web']}/ready/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return True
        except Exception:  # noqa: BLE001 - a probe that fails is just "not yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
