"""The deployment gate on the real store: `judgeline export` judges the candidate on the gold labels in ClickHouse,
refuses a version below the kappa bar or worse than the one in service unless --force, and records every decision
with its figures and bias meters in judge_versions."""

import json

import pytest
from tests_support import always_a_judge, run_cli

pytestmark = pytest.mark.integration


_cli = run_cli


def _rows(client, db):
    result = client.query(f"SELECT version, decision, reasons, gold_n, gold_kappa, serving_version, "
                          f"candidate_kappa_compared, serving_kappa_compared, longer_wins, human_longer_wins, bias, "
                          f"held_out FROM {db}.judge_versions_latest ORDER BY decided_at")
    return [dict(zip(result.column_names, r)) for r in result.result_rows]


_always_a = always_a_judge


def test_export_gate_accepts_refuses_forces_and_records_each_decision(store, tiny_judge, sample_gold, tmp_path,
                                                                      monkeypatch):
    client, settings = store
    db = settings.clickhouse.database
    repo = tmp_path / "repository"
    cli = lambda *a, **env: _cli(monkeypatch, settings, repo, *a, **env)  # noqa: E731

    done = cli("export", "--model", tiny_judge.model_dir, "--no-deploy")
    assert done.exit_code == 1 and "judgeline gold import" in done.output  # no gold labels stored yet
    assert not (repo / "judge" / "1").exists()
    assert cli("gold", "import", sample_gold).exit_code == 0

    done = cli("export", "--model", tiny_judge.model_dir, "--no-deploy")
    assert done.exit_code == 0, done.output
    assert "ACCEPTED" in done.output and (repo / "judge" / "1" / "heads.pt").is_file()
    first = _rows(client, db)[-1]
    assert first["version"] == "1" and first["decision"] == "accepted" and first["serving_version"] == ""
    assert first["gold_n"] > 20 and first["gold_kappa"] >= 0.6
    meters = json.loads(first["bias"])
    assert set(meters) == {"student", "teacher", "human"} and meters["student"]["first_wins"]["n"] > 0
    assert json.loads(first["held_out"])["pairwise"]["n"] > 0

    bad = _always_a(tiny_judge, tmp_path)
    done = cli("export", "--model", bad, "--no-deploy", JUDGELINE_GATE__MIN_KAPPA="-1")  # clears the bar ...
    assert done.exit_code == 1 and "worse than version 1 in service" in done.output  # ... not the version in service
    assert not (repo / "judge" / "2").exists()
    refused = _rows(client, db)[-1]
    assert refused["decision"] == "refused" and refused["serving_version"] == "1"
    assert refused["candidate_kappa_compared"] < refused["serving_kappa_compared"]
    assert refused["longer_wins"] is not None and refused["human_longer_wins"] is not None

    done = cli("export", "--model", bad, "--no-deploy")
    assert done.exit_code == 1 and "below the bar of 0.60" in done.output and "--force" in done.output
    done = cli("export", "--model", bad, "--no-deploy", "--force")
    assert done.exit_code == 0 and (repo / "judge" / "2").is_dir()
    decisions = [(r["version"], r["decision"]) for r in _rows(client, db)]
    # every decision is a row, the first refusal (no gold stored yet) included
    assert decisions == [("1", "refused"), ("1", "accepted"), ("2", "refused"), ("2", "refused"), ("2", "forced")]


def test_deploy_assesses_a_version_without_a_decision_and_loads_it_only_when_allowed(store, tiny_judge, sample_gold,
                                                                                     tmp_path, monkeypatch):
    import uuid

    from judge_engine.training.export import export

    client, settings = store
    db = settings.clickhouse.database
    repo = settings.stack.model_repository  # the running Triton's repository, under a model name of its own
    model = f"judge_gate_{uuid.uuid4().hex[:8]}"
    cli = lambda *a: _cli(monkeypatch, settings, repo, *a, JUDGELINE_TRITON__MODEL_NAME=model)  # noqa: E731
    assert cli("gold", "import", sample_gold).exit_code == 0
    done = cli("export", "--model", tiny_judge.model_dir)  # accepted, then deployed on that decision
    assert done.exit_code == 0, done.output
    assert "ACCEPTED" in done.output and f"serves {model} version 1" in done.output

    export(_always_a(tiny_judge, tmp_path), repo, model)  # written behind the gate's back: no decision recorded
    done = cli("deploy")
    assert done.exit_code == 1 and "refused by the deployment gate" in done.output
    done = cli("deploy", "--force")
    assert done.exit_code == 0 and f"serves {model} version 2" in done.output, done.output
    assert [(r["version"], r["decision"]) for r in _rows(client, db)] == [("1", "accepted"), ("2", "refused"),
                                                                          ("2", "forced")]
