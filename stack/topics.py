"""Creating and listing judgeline's Kafka topics with confluent-kafka's admin client.

Contract:
- ``ensure_topics`` creates every topic named in settings that does not exist yet, the stream topics with the
  configured partition count, the compacted control topics (``TopicSettings.compacted``: the routing policies) with
  one partition and ``cleanup.policy=compact``, plus the OpenTelemetry Collector's spans topic when
  ``otel.ingest_spans`` is on, all with the configured replication factor, and leaves existing topics alone (so it
  is safe on every start and on Apache Kafka). It returns the names it created. Pre-creating matters: the embedded
  broker auto-creates topics with 4
  partitions, whatever the settings say.
- ``list_topics`` returns {topic: partition count}.
"""

from __future__ import annotations

import logging

from schemas.settings import Settings


def _admin(settings: Settings):
    from confluent_kafka.admin import AdminClient

    # librdkafka's connection errors go to Python logging, not straight to stderr
    return AdminClient(settings.kafka.client_config(), logger=logging.getLogger("judgeline.kafka"))


def list_topics(settings: Settings, timeout_s: float = 10.0) -> dict[str, int]:
    meta = _admin(settings).list_topics(timeout=timeout_s)
    return {name: len(t.partitions) for name, t in meta.topics.items() if not name.startswith("__")}


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    from confluent_kafka.admin import NewTopic

    topics = settings.kafka.topics
    existing = list_topics(settings, timeout_s)
    spans = [settings.otel.spans_topic] if settings.otel.ingest_spans else []
    wanted = [NewTopic(n, num_partitions=topics.partitions, replication_factor=topics.replication_factor)
              for n in [*topics.names(), *spans]]
    wanted += [NewTopic(n, num_partitions=1, replication_factor=topics.replication_factor,
                        config={"cleanup.policy": "compact"}) for n in topics.compacted()]
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    admin = _admin(settings)  # keep the client alive until every future resolves
    futures = admin.create_topics(missing, operation_timeout=timeout_s)
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except Exception as e:  # a topic created meanwhile by another process is fine
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    return created
