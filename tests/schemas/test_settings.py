"""Settings: environment names, nesting, validation, frozen, secrets masked."""

import pytest
from pydantic import SecretStr, ValidationError

from schemas.settings import Settings, env_names


def test_defaults_are_the_embedded_stack(tmp_path):
    s = Settings()
    assert s.stack.bind_host == "127.0.0.1"
    assert s.clickhouse_dsn.startswith("chdb:///")
    assert s.kafka.client_config() == {"bootstrap.servers": "127.0.0.1:9092", "security.protocol": "PLAINTEXT"}


def test_environment_overrides_nested_settings(monkeypatch):
    monkeypatch.setenv("JUDGELINE_KAFKA__BOOTSTRAP_SERVERS", "k1:9093,k2:9093")
    monkeypatch.setenv("JUDGELINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("JUDGELINE_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("JUDGELINE_KAFKA__SASL_USERNAME", "judge")
    monkeypatch.setenv("JUDGELINE_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("JUDGELINE_KAFKA__TOPICS__PARTITIONS", "12")
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DSN", "https://ch.example:8443")
    monkeypatch.setenv("JUDGELINE_ROUTING__THRESHOLD", "0.85")
    s = Settings()
    conf = s.kafka.client_config()
    assert conf["sasl.password"] == "hunter2" and conf["security.protocol"] == "SASL_SSL"
    assert s.kafka.topics.partitions == 12 and s.routing.threshold == 0.85
    assert s.clickhouse_dsn == "https://ch.example:8443"


@pytest.mark.parametrize(
    "name, value, field",
    [
        ("JUDGELINE_ROUTING__THRESHOLD", "1.5", "threshold"),
        ("JUDGELINE_CLICKHOUSE__DSN", "postgres://x", "clickhouse.dsn"),
        ("JUDGELINE_CLICKHOUSE__DATABASE", "drop table;", "clickhouse.database"),
        ("JUDGELINE_STACK__BIND_HOST", "0.0.0.0", "loopback"),
        ("JUDGELINE_KAFKA__HEARTBEAT_INTERVAL_MS", "5000", "heartbeat_interval_ms"),
        ("JUDGELINE_KAFKA__SECURITY_PROTOCOL", "TLS", "security_protocol"),
    ],
)
def test_bad_settings_name_the_field(monkeypatch, name, value, field):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as e:
        Settings()
    assert field in str(e.value)


def test_frozen_and_secrets_masked(monkeypatch):
    monkeypatch.setenv("JUDGELINE_FRONTIER__API_KEY", "sk-live-0123456789abcdef")
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__PASSWORD", "pw-very-secret")
    s = Settings()
    assert isinstance(s.frontier.api_key, SecretStr)
    with pytest.raises(ValidationError):
        s.routing.threshold = 0.1
    masked = repr(s.masked()) + repr(s) + str(s)
    assert "sk-live-0123456789abcdef" not in masked and "pw-very-secret" not in masked
    assert s.masked()["frontier"]["api_key"] == "**********"


def test_env_names_cover_every_leaf_setting():
    names = env_names()
    assert {"JUDGELINE_KAFKA__BOOTSTRAP_SERVERS", "JUDGELINE_KAFKA__TOPICS__TRACES", "JUDGELINE_FRONTIER__API_KEY",
            "JUDGELINE_TRITON__MODEL_NAME", "JUDGELINE_STACK__STATE_DIR", "JUDGELINE_LOG_LEVEL"} <= names
    assert "JUDGELINE_KAFKA__BOOTSTRAP_SERVER" not in names
