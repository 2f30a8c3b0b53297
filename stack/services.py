"""The embedded stack: `judgeline up`, `down` and `status` for the broker, the store and Triton.

Contract:
- ``up`` installs what is missing (the Triton serving venv), then starts each service that is not already
  running, in order broker -> clickhouse -> triton, waits until each is healthy, runs its post-start step
  (topics, migrations) and records it in ``<state_dir>/stack.json`` (PID, ports, command, log). Running ``up``
  twice starts nothing twice. A service that fails to start is stopped and the error shows its log tail.
- ``down`` stops only the processes recorded there, by PID, and only while each PID still runs the recorded
  executable; then it removes their records.
- ``status`` reports, per service: recorded or not, process alive, health probe result, address.
- ``start(settings, only)`` is what ``judgeline up`` and the demo run: refuses an unknown service name
  (``ValueError`` naming the choices), starts the named services (all by default) and returns the settings resolved
  against the running stack. ``unhealthy(rows)`` names the services of a ``status`` that are not healthy;
  ``ServiceStatus.line()`` is one row as text.
- ``effective_settings`` points every endpoint the user did not configure explicitly at the running embedded
  service, so that all CLI commands and workers find the stack that ``up`` started (on whatever free ports).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable, Sequence

from schemas.settings import Settings
from stack import broker, process, store_server, triton


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    start: Callable[[Settings], process.ServiceRecord]
    healthy: Callable[[Settings, process.ServiceRecord], bool]
    after_start: Callable[[Settings, process.ServiceRecord], None] | None = None


def _migrate(settings: Settings, record: process.ServiceRecord) -> None:
    from stack.migrate import migrate_store

    migrate_store(effective_settings(settings))


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("broker", broker.start, broker.healthy, broker.after_start),
    ServiceSpec("clickhouse", store_server.start, store_server.healthy, _migrate),
    ServiceSpec("triton", triton.start, triton.healthy),
)
SERVICE_NAMES = tuple(s.name for s in SERVICES)


def _state_file(settings: Settings):
    return settings.state_dir / "stack.json"


def read_records(settings: Settings) -> dict[str, process.ServiceRecord]:
    path = _state_file(settings)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {name: process.ServiceRecord.from_dict(r) for name, r in data.get("services", {}).items()}


def _write_records(settings: Settings, records: dict[str, process.ServiceRecord]) -> None:
    path = _state_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"services": {n: r.to_dict() for n, r in records.items()}}, indent=2))
    os.replace(tmp, path)


def running_service(settings: Settings, name: str) -> process.ServiceRecord | None:
    record = read_records(settings).get(name)
    return record if record is not None and process.is_running(record) else None


def up(settings: Settings, only: tuple[str, ...] = SERVICE_NAMES, log=print) -> dict[str, process.ServiceRecord]:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    records = read_records(settings)
    for spec in SERVICES:
        if spec.name not in only:
            continue
        existing = records.get(spec.name)
        if existing is not None and process.is_running(existing):
            log(f"{spec.name}: already running (pid {existing.pid})")
            continue
        record = spec.start(settings)
        try:
            process.wait_healthy(record, lambda: spec.healthy(settings, record), settings.stack.start_timeout_s)
            records[spec.name] = record
            _write_records(settings, records)
            if spec.after_start is not None:
                spec.after_start(settings, record)
        except BaseException:
            process.stop(record)
            records.pop(spec.name, None)
            _write_records(settings, records)
            raise
        log(f"{spec.name}: started (pid {record.pid}, {_address(settings, record)})")
    return records


def start(settings: Settings, only: Sequence[str] | None = None, log=print) -> Settings:
    names = tuple(only) if only else SERVICE_NAMES
    unknown = set(names) - set(SERVICE_NAMES)
    if unknown:
        raise ValueError(f"unknown service {sorted(unknown)}; choose from {', '.join(SERVICE_NAMES)}")
    up(settings, names, log=log)
    return effective_settings(settings)


def down(settings: Settings, log=print) -> list[str]:
    records = read_records(settings)
    stopped = []
    for spec in reversed(SERVICES):
        record = records.pop(spec.name, None)
        if record is None:
            continue
        if process.stop(record):
            stopped.append(spec.name)
            log(f"{spec.name}: stopped (pid {record.pid})")
        else:
            log(f"{spec.name}: was not running (pid {record.pid} gone)")
        _write_records(settings, records)
    return stopped


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    state: str  # "healthy", "unhealthy", "dead", "not started"
    pid: int | None
    address: str
    log: str

    def line(self) -> str:
        pid = f"pid {self.pid}" if self.pid else ""
        return f"{self.name:<11} {self.state:<11} {pid:<11} {self.address}"


def unhealthy(rows: Sequence[ServiceStatus]) -> list[str]:
    return [r.name for r in rows if r.state != "healthy"]


def status(settings: Settings) -> list[ServiceStatus]:
    records = read_records(settings)
    out = []
    for spec in SERVICES:
        record = records.get(spec.name)
        if record is None:
            out.append(ServiceStatus(spec.name, "not started", None, "", ""))
            continue
        if not process.is_running(record):
            state = "dead"
        else:
            try:
                state = "healthy" if spec.healthy(settings, record) else "unhealthy"
            except Exception:
                state = "unhealthy"
        out.append(ServiceStatus(spec.name, state, record.pid, _address(settings, record), record.log))
    return out


def _address(settings: Settings, record: process.ServiceRecord) -> str:
    host = settings.stack.bind_host
    if record.name == "broker":
        return f"kafka://{host}:{record.ports['kafka']}"
    if record.name == "clickhouse":
        return f"http://{host}:{record.ports['http']} (chDB at {record.extra.get('path')})"
    return f"http://{host}:{record.ports['http']} grpc {host}:{record.ports['grpc']}"


def effective_settings(settings: Settings) -> Settings:
    """``settings`` with the endpoints of the running embedded stack filled in where not set explicitly."""
    records = {n: r for n, r in read_records(settings).items() if process.is_running(r)}
    host = settings.stack.bind_host
    updates: dict[str, object] = {}
    if "broker" in records and "bootstrap_servers" not in settings.kafka.model_fields_set:
        kafka = {"bootstrap_servers": f"{host}:{records['broker'].ports['kafka']}"}
        if "broker_reports_lag" not in settings.kafka.model_fields_set:
            kafka["broker_reports_lag"] = False  # Tansu's high watermark is wrong (platform.md)
        updates["kafka"] = settings.kafka.model_copy(update=kafka)
    if "triton" in records:
        fields = settings.triton.model_fields_set
        t = {}
        if "url" not in fields:
            t["url"] = f"{host}:{records['triton'].ports['grpc']}"
        if "http_url" not in fields:
            t["http_url"] = f"{host}:{records['triton'].ports['http']}"
        if t:
            updates["triton"] = settings.triton.model_copy(update=t)
    return settings.model_copy(update=updates) if updates else settings
