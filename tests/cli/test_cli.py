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


def _failing_app():
    import typer

    from cli._utils import exits_on_error, fails_as

    sub = typer.Typer()

    @sub.command("load")
    @exits_on_error("importing {file}", hint="see the log")
    def load(file: str, code: int = 0) -> None:
        if code:
            raise typer.Exit(code)
        raise ConnectionError("store refused\nsecond line")

    @sub.command("step")
    def step() -> None:
        with fails_as("the pipeline on Kafka at {settings.kafka.bootstrap_servers}"):
            raise KeyError("partition")

    return sub


def test_exits_on_error_gives_one_line_naming_what_failed():
    result = runner.invoke(_failing_app(), ["load", "gold.jsonl"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["error: importing gold.jsonl failed: ConnectionError: store refused second line (see the log)"]
    assert "Traceback" not in result.output


def test_exits_on_error_lets_a_commands_own_exit_through():
    assert runner.invoke(_failing_app(), ["load", "x", "--code", "3"]).exit_code == 3


def test_fails_as_names_the_step_with_settings():
    result = runner.invoke(_failing_app(), ["step"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: the pipeline on Kafka at 127.0.0.1:9092 failed: KeyError: 'partition'"


def test_frontier_replay_options_are_the_faults_fields():
    """The fault options are declared once (``Faults``); what ``start`` passes parses back to the same faults."""
    import dataclasses

    import typer

    from doubles.faults import Faults

    command = typer.main.get_command(app).commands["frontier-replay"]
    options = {p.name: p for p in command.params}
    for f in dataclasses.fields(Faults):
        assert options[f.name].default == f.default and options[f.name].help == f.metadata["help"]
    faults = Faults(latency_ms=12.5, jitter_ms=3, rate_limit_fraction=0.25, server_error_fraction=0.5,
                    retry_after_s=0.05, seed=7)
    ctx = command.make_context("frontier-replay", ["--port", "1", *faults.to_args()])
    assert Faults(**{f.name: ctx.params[f.name] for f in dataclasses.fields(Faults)}) == faults


def test_frontier_replay_refuses_bad_faults(tmp_path):
    gold = tmp_path / "g.jsonl"
    gold.write_text("")
    result = runner.invoke(app, ["frontier-replay", "--gold", str(gold), "--server-error-fraction", "1.5"])
    assert result.exit_code == 1 and "server_error_fraction must lie in [0, 1]" in result.output


def test_deploy_without_a_triton_is_one_line(monkeypatch, tmp_path):
    from stack.process import free_port

    url = f"127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("JUDGELINE_TRITON__HTTP_URL", url)
    monkeypatch.setenv("JUDGELINE_STACK__MODEL_REPOSITORY", str(tmp_path / "models"))  # not a developer's export
    result = runner.invoke(app, ["deploy"])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"error: loading judge into Triton at {url} failed: ")
    assert "Traceback" not in result.output
