"""Starting and stopping by PID: only the recorded process is ever signalled."""

import subprocess
import sys

from stack import process


def test_start_stop_and_log(tmp_path):
    record = process.start("sleeper", [sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"], tmp_path)
    process.wait_healthy(record, lambda: "hello" in process.log_tail(record), timeout_s=20)
    assert process.is_running(record)
    assert process.stop(record) is True
    assert not process.is_running(record)
    assert process.stop(record) is False  # already gone: nothing to do


def test_a_reused_pid_is_never_signalled(tmp_path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = process.ServiceRecord("old", bystander.pid, ["x"], str(tmp_path / "log"), start_ticks=1)
        assert not process.is_running(stale)
        assert process.stop(stale) is False
        assert bystander.poll() is None  # still alive
    finally:
        bystander.kill()
        bystander.wait()


def test_wait_healthy_reports_a_crash_with_the_log(tmp_path):
    record = process.start("crasher", [sys.executable, "-c", "import sys; print('boom: bad flag'); sys.exit(3)"], tmp_path)
    try:
        process.wait_healthy(record, lambda: False, timeout_s=20)
        raise AssertionError("expected ServiceError")
    except process.ServiceError as e:
        assert "crasher exited during start" in str(e) and "boom: bad flag" in str(e)


def test_free_port_is_bindable_on_loopback():
    import socket

    port = process.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
