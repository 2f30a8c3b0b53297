"""The CLI: settings printed with secrets masked, clear errors, message validation."""

import json

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_config_masks_secrets(monkeypatch):
    monkeypatch.setenv("JUDGELINE_FRONTIER__API_KEY", "sk-test-SECRET-123456789")
    monkeypatch.setenv("JUDGELINE_KAFKA__SASL_PASSWORD", "kafka-SECRET")
    for args in (["config"], ["config", "--json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "SECRET" not in result.output
        assert "**********" in result.output
    lines = runner.invoke(app, ["config"]).output.splitlines()
    assert "JUDGELINE_FRONTIER__API_KEY=**********" in lines
    assert json.loads(runner.invoke(app, ["config", "--json"]).output)["kafka"]["sasl_password"] == "**********"


def test_invalid_settings_give_one_clear_line(monkeypatch):
    monkeypatch.setenv("JUDGELINE_ROUTING__THRESHOLD", "2")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 1
    assert "routing.threshold" in result.output and "JUDGELINE_" in result.output


def test_validate_reports_each_bad_line(tmp_path):
    path = tmp_path / "traces.jsonl"
    path.write_text(
        '{"trace_id": "a", "kind": "pointwise", "question": "q", "answer": "x"}\n'
        '{"trace_id": "b", "kind": "pairwise", "question": "q", "answer_a": "x"}\n'
        "not json\n"
    )
    result = runner.invoke(app, ["validate", "Trace", str(path)])
    assert result.exit_code == 1
    assert "line 2:" in result.output and "answer_b" in result.output
    assert "line 3:" in result.output and "not JSON" in result.output
    assert "1 valid, 2 invalid" in result.output


def test_unknown_service_is_refused():
    result = runner.invoke(app, ["up", "--only", "postgres"])
    assert result.exit_code == 1 and "unknown service" in result.output
