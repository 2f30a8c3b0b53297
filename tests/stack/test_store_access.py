"""The embedded store server behaves like ClickHouse on the network (issue 12, point 4).

A store server of the test's own (a fresh chDB path, a password, a 4 KiB body limit), spoken to with plain HTTP
(urllib) the way ClickHouse's HTTP interface documentation shows, and with clickhouse-connect: credentials are
required (HTTP Basic, X-ClickHouse-User/Key, URL parameters), a GET is read-only, nothing reaches outside the store
(file, url, INFILE), a query in the POST body is run with its FORMAT, and an over-size body (also once decompressed)
is refused.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from stack import process
from stack.workers import wait_until

pytestmark = pytest.mark.integration

PASSWORD = "store-pw-for-tests"
LIMIT = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("store-access")
    port = process.free_port()
    command = [sys.executable, "-m", "stack.store_server", "--path", str(state / "db"), "--host", "127.0.0.1",
               "--port", str(port), "--max-body-bytes", str(LIMIT)]
    record = process.start("store-access", command, state, cwd=Path(__file__).resolve().parents[2],
                           env={"JUDGELINE_STORE_USERNAME": "judgeline", "JUDGELINE_STORE_PASSWORD": PASSWORD})
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _call(base + "/ping")[0] == 200, 60), Path(record.log).read_text()
        yield base
    finally:
        process.stop(record)


def _call(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None
                                     else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)
    except OSError:
        return 0, b"", {}


def _basic(user: str = "judgeline", password: str = PASSWORD) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _q(sql: str) -> str:
    return "/?query=" + urllib.parse.quote(sql)


def test_every_query_needs_the_configured_credentials(server):
    assert _call(server + "/ping")[:2] == (200, b"Ok.\n")  # the health check needs none
    for headers in ({}, _basic(password="wrong"), _basic(user="default", password="")):
        status, body, got = _call(server + _q("SELECT 1"), headers=headers)
        assert (status, got.get("X-ClickHouse-Exception-Code")) == (401, "516"), body
        assert b"AUTHENTICATION_FAILED" in body and PASSWORD.encode() not in body
    assert _call(server + _q("SELECT 1"), headers=_basic())[:2] == (200, b"1\n")
    key = {"X-ClickHouse-User": "judgeline", "X-ClickHouse-Key": PASSWORD}
    assert _call(server + _q("SELECT 2"), headers=key)[:2] == (200, b"2\n")
    params = urllib.parse.urlencode({"query": "SELECT 3", "user": "judgeline", "password": PASSWORD})
    assert _call(f"{server}/?{params}")[:2] == (200, b"3\n")


def test_a_get_is_read_only(server):
    status, body, headers = _call(server + _q("CREATE TABLE default.made_by_get (x UInt8) ENGINE = Memory"),
                                  headers=_basic())
    assert (status, headers.get("X-ClickHouse-Exception-Code")) == (403, "164") and b"READONLY" in body
    assert _call(server + _q("EXISTS TABLE default.made_by_get"), headers=_basic())[1] == b"0\n"
    status, _, _ = _call(server + "/", b"CREATE TABLE default.made_by_post (x UInt8) ENGINE = Memory", _basic())
    assert status == 200  # the same statement as a POST, with credentials
    assert _call(server + _q("EXISTS TABLE default.made_by_post"), headers=_basic())[1] == b"1\n"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')",
    "INSERT INTO default.made_by_post FROM INFILE '/etc/hostname' FORMAT TSV",
    "SELECT 1 INTO OUTFILE '/tmp/judgeline-store-leak' FORMAT TSV",
    "CREATE TABLE default.f (x String) ENGINE = File(TSV)",
    "SYSTEM SHUTDOWN",
])
def test_nothing_reaches_outside_the_store_even_with_credentials(server, sql):
    status, body, headers = _call(server + "/", sql.encode(), _basic())
    assert (status, headers.get("X-ClickHouse-Exception-Code")) == (403, "497"), body
    assert b"root:" not in body


def test_a_query_in_the_post_body_runs_with_its_format(server):
    # curl --data-binary 'SELECT ... FORMAT JSONCompact' http://user:password@host:port/ (ClickHouse's HTTP docs)
    status, body, headers = _call(server + "/", b"SELECT number AS n, toString(number) AS s FROM numbers(3) "
                                               b"FORMAT JSONCompact", _basic())
    assert status == 200 and headers.get("X-ClickHouse-Format") == "JSONCompact"
    assert json.loads(body)["data"] == [[0, "0"], [1, "1"], [2, "2"]]
    assert _call(server + "/", b"SELECT 40 + 2", _basic())[:2] == (200, b"42\n")  # TabSeparated by default
    status, body, _ = _call(server + "/", b"", _basic())
    assert (status, body) == (200, b"Ok.\n")  # an empty POST is the ping, as in ClickHouse


def test_an_over_size_body_is_refused_before_and_after_decompression(server):
    import lz4.frame

    big = b"INSERT INTO default.made_by_post FORMAT TSV\n" + b"1\n" * LIMIT
    status, body, headers = _call(server + "/", big, _basic())
    assert (status, headers.get("X-ClickHouse-Exception-Code")) == (413, "27") and b"--max-body-bytes" in body
    bomb = lz4.frame.compress(b"1\n" * (64 * LIMIT))
    assert len(bomb) < LIMIT
    sql = _q("INSERT INTO default.made_by_post FORMAT TSV")
    status, body, _ = _call(server + sql, bomb, {**_basic(), "Content-Encoding": "lz4"})
    assert status == 413, body
    assert _call(server + _q("SELECT count() FROM default.made_by_post"), headers=_basic())[1] == b"0\n"


def test_clickhouse_connect_with_the_settings_credentials(server):
    import clickhouse_connect

    port = int(server.rsplit(":", 1)[1])
    client = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="judgeline", password=PASSWORD)
    client.insert("default.made_by_post", [[7], [8]], column_names=["x"])
    assert client.query("SELECT sum(x) FROM default.made_by_post").result_rows == [(15,)]
    client.command("TRUNCATE TABLE default.made_by_post")
    with pytest.raises(Exception, match="516|AUTHENTICATION_FAILED|401"):
        clickhouse_connect.get_client(host="127.0.0.1", port=port, username="judgeline", password="wrong")
