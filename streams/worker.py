"""`judgeline worker inline|frontier`: one stream worker process (a Faust worker running one agent).

Contract:
- ``build(settings, role)`` returns the Faust app with the role's agent registered (``streams.inline_agent`` or
  ``streams.frontier_agent``; with ``stream.consumer`` librdkafka the inline worker's consumers are batch consumers
  run as app tasks, and Faust runs only its web server and producer: ``producer_only``; the stages publish with
  their own librdkafka producer, ``streams.batch_producer``); ``stub_judge_ms`` (inline only) replaces the Triton judge with
  ``judge_engine.online.inline.ConstantJudge`` answering each call after that many milliseconds (the benchmark's
  pipeline ceiling); ``crash_agent_on_key`` (inline only, the fault suite's) makes the agent crash on the batch
  holding a message with that key (``doubles.faults.crash_on_key``); with ``otel.ingest_spans`` the inline worker also consumes the OpenTelemetry Collector's
  topic (``streams.span_agent``). The worker's metrics (``streams.metrics.WorkerMetrics``) are the stages'
  recorder and are served at ``/metrics`` on the worker's web port; with ``otel.evaluation_events`` every stored
  verdict also leaves as an OTel event (``streams.evaluation_events``), flushed when the worker shuts down.
- ``main`` runs it in the foreground until SIGTERM/SIGINT; on shutdown a batch in progress is abandoned, not
  waited for, and not acknowledged (``streams.app.acknowledged_after``): it is redelivered to the next worker of the
  group. Measured: 2 s from SIGTERM to exit with a judge call of 30 s in flight (``tests/faults/test_shutdown.py``).
  An agent that crashes ends the process at once with status 1 (``streams.app.register_agent``).
"""

from __future__ import annotations

import asyncio

from judge_engine.online.pipeline import Recorder, Recorders
from schemas.settings import Settings
from streams import frontier_agent, inline_agent, span_agent
from streams.app import Role, create_app, group_id, run
from streams.metrics import WorkerMetrics, install


def build(settings: Settings, role: Role, stub_judge_ms: float | None = None, crash_agent_on_key: str | None = None):
    group_id(settings, role)  # validates the role
    if stub_judge_ms is not None and role != "inline":
        raise ValueError("--stub-judge-ms applies to the inline worker only")
    if crash_agent_on_key is not None and role != "inline":
        raise ValueError("--crash-agent-on-key applies to the inline worker only")
    app = create_app(settings, role)
    metrics = WorkerMetrics(settings, role)
    install(app, metrics)
    recorder: Recorder = Recorders(metrics)
    if settings.otel.evaluation_events:
        from streams.evaluation_events import EvaluationEvents

        events = EvaluationEvents(settings, role)
        recorder = Recorders(metrics, events)

        @app.on_before_shutdown.connect
        async def _flush_events(sender, **_):
            await asyncio.to_thread(events.close)  # the last batches' events leave before the process ends
    if role == "inline":
        factory = None
        if stub_judge_ms is not None:
            from judge_engine.online.inline import ConstantJudge

            factory = lambda: ConstantJudge(stub_judge_ms / 1000.0)  # noqa: E731
        on_batch = None
        if crash_agent_on_key is not None:
            from doubles.faults import crash_on_key

            on_batch = crash_on_key(crash_agent_on_key)
        inline_agent.register(app, settings, factory, recorder=recorder, on_batch=on_batch)
        if settings.otel.ingest_spans:
            span_agent.register(app, settings, recorder=recorder)
    else:
        frontier_agent.register(app, settings, recorder=recorder)
    if not app.agents:  # every consumer is a batch consumer (stream.consumer librdkafka): Faust's own consumer,
        app.producer_only = True  # which cannot subscribe to nothing, stays off; its web server and producer run
    return app


def main(settings: Settings, role: Role, stub_judge_ms: float | None = None,
         crash_agent_on_key: str | None = None) -> None:
    run(build(settings, role, stub_judge_ms, crash_agent_on_key), settings)
