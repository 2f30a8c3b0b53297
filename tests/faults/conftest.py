"""Fixtures of the fault suite (helpers in ``tests/fault_support.py``).

- ``fault_stack`` (session): a private embedded stack (Tansu broker, chDB store server) in a state directory of its
  own, on fixed ports chosen at start, so that a restarted service comes back at the same address. The suite stops
  and restarts these services; the session stack of the other tests is never touched. Stopped by PID at the end.
- ``fault_triton`` (session): Triton on that stack (fixed ports) serving the tiny judge; started only by the tests
  that need it. Returns the served version.
- ``fault_run``: a factory of ``fault_support.FaultRun`` (one pipeline run with topics, groups and a database of
  its own); every process a run started is stopped by PID after the test and its databases dropped.
- ``sample_traces`` (session): the synthetic sample as traces, by kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_support import QUIET, FaultRun

from operations.produce import traces_from_gold
from schemas.settings import Settings
from stack import process
from stack import services as stack_mod
from stack.workers import wait_until


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory):
    state = tmp_path_factory.mktemp("fault-stack")
    free = process.free_port
    ports = {"broker_port": free(), "store_port": free(), "triton_http_port": free(), "triton_grpc_port": free(),
             "triton_metrics_port": free()}
    base = Settings(
        stack={"state_dir": state, "model_repository": state / "models", **ports},
        clickhouse={"database": "judgeline_faults"},
        triton={"url": f"127.0.0.1:{ports['triton_grpc_port']}", "http_url": f"127.0.0.1:{ports['triton_http_port']}",
                "timeout_s": 20, "max_retries": 1},
    )
    try:
        stack_mod.up(base, only=("broker", "clickhouse"), **QUIET)
        yield stack_mod.effective_settings(base)
    finally:
        stack_mod.down(base, **QUIET)


@pytest.fixture(scope="session")
def fault_triton(fault_stack, tiny_judge) -> str:
    from judge_engine.training.export import export

    export(tiny_judge.model_dir, Path(fault_stack.stack.model_repository), fault_stack.triton.model_name)
    stack_mod.up(fault_stack, only=("triton",), **QUIET)
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(fault_stack.triton.http_url)
    try:
        assert wait_until(lambda: client.is_model_ready(fault_stack.triton.model_name), 120)
        return str(max(int(v) for v in client.get_model_metadata(fault_stack.triton.model_name)["versions"]))
    finally:
        client.close()


@pytest.fixture
def fault_run(fault_stack):
    runs: list[FaultRun] = []

    def make(**groups) -> FaultRun:
        run = FaultRun.create(fault_stack, **groups)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


@pytest.fixture(scope="session")
def sample_traces(sample_gold):
    """The synthetic sample as traces (gold ids as trace ids: the replay frontier tells items apart by them)."""
    traces = [t for _, t in traces_from_gold(sample_gold)]
    return {"pairwise": [t for t in traces if t.kind == "pairwise"],
            "pointwise": [t for t in traces if t.kind == "pointwise"]}
