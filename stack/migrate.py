"""Applying the versioned ClickHouse migrations of ``schemas/ddl.py``.

Contract:
- Creates the database and the ``schema_migrations`` table if missing, then applies, in version order, every
  migration not yet recorded, recording each after all its statements succeed.
- Idempotent: a second run applies nothing. A migration interrupted half-way is re-run whole (every statement
  is ``IF NOT EXISTS``, or ``Guarded``: run only while its condition query answers non-zero, the condition being
  state the statement itself changes, so a re-run skips what was done).
- Refuses to run when an applied migration's checksum differs from the code's (someone edited a released
  migration): the error names the version and says to add a new migration instead.
- ``migrate_store(settings)`` applies them to the configured store (``streams.clickhouse.connect``) and database;
  ``MigrationResult.summary(where)`` is the one line ``judgeline migrate`` and the demo print.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.ddl import MIGRATIONS, MIGRATIONS_TABLE, Migration, bootstrap_statements


class MigrationDrift(RuntimeError):
    pass


@dataclass(frozen=True)
class MigrationResult:
    applied: list[int]
    already: list[int]

    def summary(self, where: str) -> str:
        return f"{where}: applied {', '.join(map(str, self.applied)) or 'none'}; already applied {len(self.already)}"


def applied_migrations(client, database: str) -> dict[int, str]:
    rows = client.query(f"SELECT version, checksum FROM {database}.{MIGRATIONS_TABLE} FINAL").result_rows
    return {int(v): c for v, c in rows}


def _holds(client, condition: str) -> bool:
    rows = client.query(condition).result_rows
    return bool(rows and rows[0][0])


def migrate(client, database: str, migrations: tuple[Migration, ...] = MIGRATIONS) -> MigrationResult:
    for statement in bootstrap_statements(database):
        client.command(statement)
    done = applied_migrations(client, database)
    for m in migrations:
        if m.version in done and done[m.version] != m.checksum:
            raise MigrationDrift(
                f"migration {m.version} ({m.name}) was applied with checksum {done[m.version]} but the code now "
                f"has {m.checksum}: released migrations must not change; add a new migration instead"
            )
    applied: list[int] = []
    for m in sorted(migrations, key=lambda m: m.version):
        if m.version in done:
            continue
        for condition, statement in m.steps(database):
            if condition is None or _holds(client, condition):
                client.command(statement)
        client.insert(
            f"{database}.{MIGRATIONS_TABLE}",
            [[m.version, m.name, m.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(m.version)
    return MigrationResult(applied=applied, already=sorted(done))


def migrate_store(settings) -> MigrationResult:
    from streams.clickhouse import connect

    return migrate(connect(settings), settings.clickhouse.database)
