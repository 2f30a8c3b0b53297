"""Connecting to the store: one function that every process uses, whatever the DSN.

Contract:
- ``http(s)://`` DSNs go to that ClickHouse server (or to the embedded store server) with clickhouse-connect's
  HTTP client; the username and the ``SecretStr`` password come from settings, never from the DSN in logs.
- ``chdb:///path``: if the embedded store server started by ``judgeline up`` serves that path, the client talks
  to it over HTTP (chDB lets only one process open a path); otherwise the path is opened in this process.
- Clients are created without a current database: statements name ``<database>.<table>`` explicitly, so the
  same client can create the database first (migrations) and every query says which tables it reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from schemas.settings import Settings


def embedded_store_url(settings: Settings, chdb_path: str) -> str | None:
    """The HTTP address of the running embedded store server that owns ``chdb_path``, if any."""
    from stack.services import running_service

    record = running_service(settings, "clickhouse")
    if record is None or Path(record.extra.get("path", "")).resolve() != Path(chdb_path).resolve():
        return None
    return f"http://{settings.stack.bind_host}:{record.ports['http']}"


def resolve_dsn(settings: Settings) -> str:
    dsn = settings.clickhouse_dsn
    if dsn.startswith("chdb://"):
        path = dsn[len("chdb://") :]
        if path != "memory":
            return embedded_store_url(settings, path) or dsn
    return dsn


def connect(settings: Settings, **kwargs: Any):
    """A clickhouse-connect client for the configured store (see the module contract)."""
    import clickhouse_connect

    dsn = resolve_dsn(settings)
    if dsn.startswith("chdb://"):
        path = dsn[len("chdb://") :]
        if path != "memory":
            Path(path).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    url = urlsplit(dsn)
    password = settings.clickhouse.password.get_secret_value() if settings.clickhouse.password else ""
    return clickhouse_connect.get_client(
        host=url.hostname,
        port=url.port or (8443 if url.scheme == "https" else 8123),
        secure=url.scheme == "https",
        username=settings.clickhouse.username,
        password=password,
        **kwargs,
    )


def describe(settings: Settings) -> str:
    """Where the store is, for humans (no credentials)."""
    dsn = resolve_dsn(settings)
    if dsn.startswith("chdb://"):
        return f"chDB in process at {dsn[len('chdb://'):]}"
    url = urlsplit(dsn)
    return f"ClickHouse over {url.scheme}://{url.hostname}:{url.port}"
