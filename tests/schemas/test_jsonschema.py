"""The checked-in JSON Schemas match the models, and `judgeline schemas export` writes exactly them."""

import json

from typer.testing import CliRunner

from cli.main import app
from schemas.jsonschema import JSON_DIR, MESSAGE_TYPES, render, schemas


def test_checked_in_schemas_match_the_models():
    current = schemas()
    assert sorted(p.stem for p in JSON_DIR.glob("*.json")) == sorted(current)
    for name, schema in current.items():
        assert (JSON_DIR / f"{name}.json").read_text() == render(schema), (
            f"schemas/json/{name}.json is stale: run `judgeline schemas export`"
        )


def test_export_command_writes_every_schema(tmp_path):
    result = CliRunner().invoke(app, ["schemas", "export", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(written) == {m.__name__ for m in MESSAGE_TYPES}
    assert "answer_a" in written["Trace"]["properties"]
    assert written["Verdict"]["properties"]["label"]["enum"] == ["A", "B", "tie", "pass", "fail"]
