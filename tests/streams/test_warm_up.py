"""streams.app.warm_up: a stage connects its store (the client, the insert contexts of its tables) and the app's
producer (its topics' metadata) before its first batch, so the first traces after a worker starts do not wait for
them; a part that cannot connect is logged by name and left to the first batch, never an error at start."""

import asyncio
import logging
import time

import pytest

from schemas.settings import Settings
from streams.app import create_app, producer, warm_up
from streams.sink import ClickHouseStore


def test_a_store_and_broker_that_cannot_be_reached_are_logged_and_start_goes_on(tmp_path, caplog):
    # no store server in this state directory (the embedded DSN then refuses to open chDB in a worker) and nothing
    # listening on the broker's port: both parts fail, each within the timeout, and warm_up still returns
    settings = Settings(stack={"state_dir": tmp_path}, kafka={"bootstrap_servers": "127.0.0.1:1"})
    app = create_app(settings, "inline")
    store = ClickHouseStore(settings)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="judgeline.worker"):
        asyncio.run(warm_up(app, settings, store, ["verdicts"], [settings.kafka.topics.verdicts], timeout_s=1.0))
    assert time.monotonic() - started < 30
    messages = [r.getMessage() for r in caplog.records if r.name == "judgeline.worker"]
    assert any(m.startswith("warm-up: the store not reached") and "ConnectionError" in m for m in messages)
    assert any(m.startswith("warm-up: the broker not reached") for m in messages)
    producer(app, settings).close(timeout_s=0.1)


@pytest.mark.integration
def test_warm_up_connects_the_store_and_the_producer_the_first_batch_uses(store, caplog):
    _, settings = store
    app = create_app(settings, "inline")
    sink = ClickHouseStore(settings)
    tables = ["verdicts", "traces", "dead_letters"]
    try:
        with caplog.at_level(logging.WARNING, logger="judgeline.worker"):
            asyncio.run(warm_up(app, settings, sink, tables, [settings.kafka.topics.verdicts]))
        assert not [r for r in caplog.records if r.name == "judgeline.worker"]
        client = sink._client
        assert client is not None and sorted(sink._contexts) == sorted(tables)
        assert producer(app, settings) is app.judgeline_producer  # the one the stage's publish then uses
        assert sink.insert_sync("verdicts", []) == 0 and sink._client is client  # the same connection, kept
    finally:
        sink.close()
        producer(app, settings).close()
