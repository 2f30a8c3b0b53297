"""Kafka SASL/SSL and ClickHouse credentials pass from settings to every client that connects.

No SASL or TLS broker can run on this machine (Tansu speaks PLAINTEXT only), so the Kafka side checks the built
configuration of each client instead of a handshake: librdkafka (producer, admin) is given the settings' keys and
accepts them (it validates its configuration, the CA file included, when a client is created), and Faust's broker
credentials reach the aiokafka producer and consumer as Faust translates them. The ClickHouse side is checked on
the wire: a client made by ``streams.clickhouse.connect`` sends the username and password to the store server.
"""

import base64
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import make_settings

from stack.topics import _admin as admin_client
from streams.app import create_app
from streams.clickhouse import connect

SASL = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "svc-judgeline",
        "sasl_password": "s3cret-sasl"}


@pytest.fixture
def ca_file(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test CA")
    key, cert = tmp_path / "ca.key", tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=judgeline-test-ca"], check=True, capture_output=True)
    return cert


def test_librdkafka_gets_and_accepts_the_sasl_ssl_settings(ca_file):
    from confluent_kafka import KafkaException, Producer

    kafka = make_settings(kafka={**SASL, "bootstrap_servers": "127.0.0.1:1", "ssl_ca_location": str(ca_file)}).kafka
    conf = kafka.client_config()
    assert conf == {"bootstrap.servers": "127.0.0.1:1", "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-judgeline",
                    "sasl.password": "s3cret-sasl", "ssl.ca.location": str(ca_file)}
    Producer(conf)  # librdkafka validates the whole configuration here, reading the CA file
    with pytest.raises(KafkaException, match="ssl.ca.location"):
        Producer({**conf, "ssl.ca.location": str(ca_file.parent / "missing.pem")})


def test_the_producer_and_the_admin_client_are_built_from_the_settings(monkeypatch, ca_file):
    import confluent_kafka
    import confluent_kafka.admin

    from operations.produce import produce

    seen = []

    class Recorder:
        def __init__(self, conf, **_):
            seen.append(conf)

        def flush(self, *_):
            return 0

    monkeypatch.setattr(confluent_kafka, "Producer", Recorder)
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", Recorder)
    settings = make_settings(kafka={**SASL, "ssl_ca_location": str(ca_file)})
    produce(settings, [])
    admin_client(settings)
    assert len(seen) == 2
    for conf in seen:
        assert settings.kafka.client_config().items() <= conf.items() and conf["sasl.password"] == "s3cret-sasl"


def test_faust_gets_the_sasl_and_ssl_credentials(tmp_path, ca_file):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    settings = make_settings(kafka={**SASL, "ssl_ca_location": str(ca_file)}, stack={"state_dir": tmp_path})
    app = create_app(settings, "inline")
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)  # what the consumer and producer are given
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password")} == {"security_protocol": "SASL_SSL",
                                                             "sasl_mechanism": "SCRAM-SHA-512",
                                                             "sasl_plain_username": "svc-judgeline",
                                                             "sasl_plain_password": "s3cret-sasl"}
    context = auth["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    subjects = [dict(x[0] for x in cert["subject"]) for cert in context.get_ca_certs()]
    assert {"commonName": "judgeline-test-ca"} in subjects  # the configured CA, loaded
    assert app.producer._settings_auth() == auth  # the app's own producer

    plain_ssl = create_app(make_settings(kafka={"security_protocol": "SSL", "ssl_ca_location": str(ca_file)},
                                         stack={"state_dir": tmp_path}), "frontier")
    auth = credentials_to_aiokafka_auth(plain_ssl.conf.broker_credentials)
    assert auth["security_protocol"] == "SSL" and auth["ssl_context"].get_ca_certs()


class _RecordAuth(BaseHTTPRequestHandler):
    """Answers clickhouse-connect's start-up queries like a ClickHouse server would, recording the credentials."""

    protocol_version = "HTTP/1.1"
    seen: list = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.headers.get("Authorization"), self.headers.get("X-ClickHouse-User"),
                                self.headers.get("X-ClickHouse-Key")))
        body = b""
        self.send_response(200)
        for k, v in {"Content-Type": "text/plain", "X-ClickHouse-Format": "Native", "X-ClickHouse-Timezone": "UTC",
                     "X-ClickHouse-Server-Display-Name": "recorder", "Content-Length": "0"}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST


def test_clickhouse_connect_sends_the_username_and_password():
    _RecordAuth.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordAuth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = make_settings(clickhouse={"dsn": f"http://127.0.0.1:{server.server_address[1]}",
                                             "username": "analyst", "password": "s3cret-ch"})
        try:
            connect(settings)
        except Exception:  # noqa: BLE001 - the recorder answers no query properly; the request is what counts
            pass
    finally:
        server.shutdown()
        server.server_close()
    assert _RecordAuth.seen, "clickhouse-connect made no request"
    expected = "Basic " + base64.b64encode(b"analyst:s3cret-ch").decode()
    assert all(auth == expected or (user, key) == ("analyst", "s3cret-ch") for auth, user, key in _RecordAuth.seen)
