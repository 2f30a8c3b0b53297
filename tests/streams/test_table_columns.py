"""A table's columns come from its model: the DDL after every migration, read back from the real store, against the
models of ``streams.sink.TABLE_MODELS``."""

from __future__ import annotations

import types
import typing
from datetime import datetime

import pytest

from schemas.ddl import TABLES
from streams.sink import COLUMNS, JSON_COLUMNS, NOT_STORED, NULLABLE, TABLE_MODELS, row

INTEGER_TYPES = {"UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64"}


def _unwrap(annotation) -> tuple[bool, typing.Any]:
    """(optional, the annotation without ``| None`` and ``Annotated``)."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        assert len(args) == 1, f"a union of several types has no column type: {annotation}"
        annotation = args[0]
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return optional, annotation


def _accepted(annotation) -> set[str]:
    """The ClickHouse types (LowCardinality and Nullable removed) that hold a field of this annotation."""
    if annotation is str or typing.get_origin(annotation) is typing.Literal:
        return {"String"}
    if annotation is bytes:
        return {"String"}
    if annotation is bool:
        return {"Bool"}
    if annotation is int:
        return INTEGER_TYPES
    if annotation is float:
        return {"Float32", "Float64"}
    if annotation is datetime:
        return {"DateTime64(3, 'UTC')"}
    if typing.get_origin(annotation) is dict:
        return {"Map(String, String)"}
    raise AssertionError(f"no column type for {annotation}")


def _strip(ch_type: str, wrapper: str) -> tuple[bool, str]:
    prefix = f"{wrapper}("
    return (True, ch_type[len(prefix):-1]) if ch_type.startswith(prefix) else (False, ch_type)


@pytest.fixture
def ddl_columns(store):
    client, settings = store
    rows = client.query(
        "SELECT table, name, type, default_kind FROM system.columns WHERE database = {db:String} "
        "ORDER BY table, position", parameters={"db": settings.clickhouse.database}).result_rows
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for table, name, ch_type, default_kind in rows:
        out.setdefault(table, {})[name] = (ch_type, default_kind)
    return out


def test_every_table_has_a_model_and_the_model_fields_are_the_columns():
    assert set(TABLE_MODELS) == set(TABLES)
    for table, model in TABLE_MODELS.items():
        assert set(COLUMNS[table]) | NOT_STORED.get(table, frozenset()) == set(model.model_fields)


@pytest.mark.integration
def test_every_model_field_has_a_column_of_a_compatible_type(ddl_columns):
    for table, model in TABLE_MODELS.items():
        for name in COLUMNS[table]:
            assert name in ddl_columns[table], f"{table}.{name}: the model has it, the DDL does not; add a migration"
            ch_type, default_kind = ddl_columns[table][name]
            assert default_kind != "MATERIALIZED", f"{table}.{name} is materialized and cannot be written"
            optional, annotation = _unwrap(model.model_fields[name].annotation)
            nullable, ch_type = _strip(ch_type, "Nullable")
            assert nullable == ((table, name) in NULLABLE), f"{table}.{name}: Nullable in the DDL iff in NULLABLE"
            assert optional or not nullable, f"{table}.{name}: a Nullable column for a required field"
            _, ch_type = _strip(ch_type, "LowCardinality")
            if (table, name) in JSON_COLUMNS:
                assert typing.get_origin(annotation) is dict and ch_type == "String", f"{table}.{name}: JSON text"
                continue
            accepted = _accepted(annotation)
            assert ch_type in accepted, f"{table}.{name}: {ch_type} does not hold {annotation} ({sorted(accepted)})"
            if optional and not nullable:  # None is written as '' (row()), which only a string column takes
                assert ch_type == "String", f"{table}.{name}: optional {annotation} needs a Nullable column"


@pytest.mark.integration
def test_every_column_the_sink_does_not_write_has_a_default(ddl_columns):
    for table in TABLE_MODELS:
        for name, (ch_type, default_kind) in ddl_columns[table].items():
            if name not in COLUMNS[table]:
                assert default_kind in ("DEFAULT", "MATERIALIZED", "ALIAS"), (
                    f"{table}.{name} ({ch_type}) is neither written by the sink nor has a default: add the field "
                    f"to {TABLE_MODELS[table].__name__} or a DEFAULT to the column")


def test_the_named_exceptions_name_real_columns():
    for table, name in NULLABLE | JSON_COLUMNS:
        assert name in COLUMNS[table], f"{table}.{name} is named an exception but is not a column"
    for table, names in NOT_STORED.items():
        assert names <= set(TABLE_MODELS[table].model_fields)
    assert len(row("dead_letters", _dead_letter())) == len(COLUMNS["dead_letters"])


def _dead_letter():
    from schemas.dead_letter import DeadLetter

    return DeadLetter(raw=b"x", error="(message): not JSON", topic="t", partition=0, offset=1,
                      message_time=datetime(2026, 11, 1))
