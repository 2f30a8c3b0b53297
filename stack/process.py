"""Starting, health-checking and stopping one local service process, by PID.

Contract:
- ``start`` launches a command in its own session (so it outlives the CLI that started it), with stdout and
  stderr appended to ``<state_dir>/logs/<name>.log``, and returns a ``ServiceRecord`` (pid, ports, command,
  log path) that the caller persists.
- ``wait_healthy`` polls a health probe until it passes, the process dies (the log tail is in the error), or the
  timeout runs out.
- ``stop`` ends only the process a record names, and only while that PID is the very process started (its
  kernel start time is recorded, so a PID reused by the OS is never signalled): SIGTERM, a grace period, then SIGKILL.
- ``free_port`` asks the OS for a free port on the loopback address.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping


class ServiceError(RuntimeError):
    """A service did not start or stop as asked; the message says which and shows its log tail."""


@dataclass
class ServiceRecord:
    name: str
    pid: int
    command: list[str]
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    started_at: float = field(default_factory=time.time)
    start_ticks: int | None = None  # the kernel's start time of the PID: tells our process from a reused PID

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "ServiceRecord":
        return cls(**data)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start(
    name: str,
    command: list[str],
    state_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ports: Mapping[str, int] | None = None,
    extra: Mapping[str, str] | None = None,
) -> ServiceRecord:
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    return ServiceRecord(
        name, proc.pid, list(command), str(log_path), dict(ports or {}), dict(extra or {}),
        start_ticks=_start_ticks(proc.pid),
    )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()  # fields after the command name, starting with the state


def _start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 of /proc/pid/stat: start time since boot


def is_running(record: ServiceRecord) -> bool:
    """True when the recorded PID is alive (not a zombie) and is the very process that was started."""
    fields = _stat_fields(record.pid)
    if fields is None or fields[0] == "Z":
        return False
    return record.start_ticks is None or int(fields[19]) == record.start_ticks


def log_tail(record: ServiceRecord, lines: int = 30) -> str:
    try:
        return "\n".join(Path(record.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(record: ServiceRecord, probe: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(record):
            _reap(record.pid)
            raise ServiceError(f"{record.name} exited during start; log {record.log}:\n{log_tail(record)}")
        try:
            if probe():
                return
        except Exception:  # a probe that raises is just not healthy yet
            pass
        time.sleep(0.2)
    raise ServiceError(f"{record.name} not healthy after {timeout_s:.0f} s; log {record.log}:\n{log_tail(record)}")


def stop(record: ServiceRecord, grace_s: float = 10.0) -> bool:
    """Stop the recorded process (and its process group). Returns False when it was not running."""
    if not is_running(record):
        _reap(record.pid)
        return False
    _signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not is_running(record):
            return True
        time.sleep(0.1)
    _signal_group(record.pid, signal.SIGKILL)
    for _ in range(50):
        _reap(record.pid)
        if not is_running(record):
            break
        time.sleep(0.1)
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: its group id is its pid
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our child (it is when the same process started it)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
