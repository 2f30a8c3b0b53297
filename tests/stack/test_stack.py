"""The embedded stack on real processes: health, loopback binding, status, down stops only what up started."""

import json
import subprocess
import sys

import pytest
from conftest import make_settings
from tests_support import LOOPBACK_HEX, listening_addresses
from typer.testing import CliRunner

from cli.main import app
from stack import process
from stack import services as stack_mod

pytestmark = pytest.mark.integration


def test_every_service_is_healthy_and_reported(stack):
    rows = {r.name: r for r in stack_mod.status(stack)}
    assert {n: r.state for n, r in rows.items()} == {"broker": "healthy", "clickhouse": "healthy", "triton": "healthy"}


def test_services_listen_on_loopback_only(stack):
    for name, record in stack_mod.read_records(stack).items():
        addresses = listening_addresses(record.pid)
        assert addresses, name
        assert addresses <= LOOPBACK_HEX, (name, addresses)


def test_triton_runs_numpys_openblas_on_one_thread(stack):
    # the python backend's stubs inherit it: OpenBLAS's own thread per core competed with torch's and ONNX Runtime's
    # at batch 1 (issue 13)
    record = stack_mod.running_service(stack, "triton")
    environ = dict(v.split("=", 1) for v in open(f"/proc/{record.pid}/environ").read().split("\0") if "=" in v)
    assert environ.get("OPENBLAS_NUM_THREADS") == "1"


def test_topics_are_precreated_with_configured_partitions(stack):
    from stack.topics import list_topics

    topics = list_topics(stack)
    for name in stack.kafka.topics.names():
        assert topics.get(name) == stack.kafka.topics.partitions


def test_the_routing_policies_topic_is_compacted_with_one_partition(stack):
    from confluent_kafka.admin import AdminClient, ConfigResource

    from stack.topics import list_topics

    (name,) = stack.kafka.topics.compacted()
    assert list_topics(stack).get(name) == 1
    admin = AdminClient(stack.kafka.client_config())
    (future,) = admin.describe_configs([ConfigResource("topic", name)]).values()
    assert future.result(timeout=10)["cleanup.policy"].value == "compact"


def test_status_command(stack, monkeypatch):
    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(stack.state_dir))
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert {r["name"]: r["state"] for r in json.loads(result.output)} == {
        "broker": "healthy", "clickhouse": "healthy", "triton": "healthy"
    }


def test_up_is_idempotent_and_down_stops_only_its_own(tmp_path):
    settings = make_settings(stack={"state_dir": tmp_path / "state"})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        first = stack_mod.up(settings, only=("broker",), log=lambda *_: None)["broker"]
        again = stack_mod.up(settings, only=("broker",), log=lambda *_: None)["broker"]
        assert again.pid == first.pid  # nothing started twice
        rows = {r.name: r.state for r in stack_mod.status(settings)}
        assert rows == {"broker": "healthy", "clickhouse": "not started", "triton": "not started"}
        assert stack_mod.down(settings, log=lambda *_: None) == ["broker"]
        assert not process.is_running(first)
        assert bystander.poll() is None
        assert stack_mod.read_records(settings) == {}
    finally:
        stack_mod.down(settings, log=lambda *_: None)
        bystander.kill()
        bystander.wait()


def test_effective_settings_point_at_the_running_stack(stack):
    records = stack_mod.read_records(stack)
    assert stack.kafka.bootstrap_servers == f"127.0.0.1:{records['broker'].ports['kafka']}"
    assert stack.triton.url == f"127.0.0.1:{records['triton'].ports['grpc']}"
    explicit = make_settings(stack={"state_dir": stack.state_dir}, kafka={"bootstrap_servers": "kafka.prod:9092"})
    assert stack_mod.effective_settings(explicit).kafka.bootstrap_servers == "kafka.prod:9092"
