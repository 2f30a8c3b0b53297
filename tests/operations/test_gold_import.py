"""`judgeline gold import` on the real store: validated, idempotent, every bad line reported, the good ones kept;
the traces `produce --gold` makes join the imported labels."""

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from operations.produce import traces_from_gold

pytestmark = pytest.mark.integration


def _cli(monkeypatch, settings, *args):
    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(settings.stack.state_dir))
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", settings.clickhouse.database)
    return CliRunner().invoke(app, list(map(str, args)))


def _count(client, db):
    return client.query(f"SELECT count() FROM {db}.gold_labels FINAL").result_rows[0][0]


def test_importing_twice_leaves_the_same_rows(store, sample_gold, monkeypatch):
    client, settings = store
    db = settings.clickhouse.database
    n = sum(1 for line in sample_gold.read_text().splitlines() if line.strip())
    first = _cli(monkeypatch, settings, "gold", "import", sample_gold)
    assert first.exit_code == 0, first.output
    assert f"{n} imported ({n} new, 0 already present" in first.output
    assert _count(client, db) == n
    second = _cli(monkeypatch, settings, "gold", "import", sample_gold)
    assert second.exit_code == 0, second.output
    assert f"{n} imported (0 new, {n} already present" in second.output
    assert _count(client, db) == n  # replaced, not added
    # every field round-trips, the labels join the trace ids that produce makes of the same file
    items = [json.loads(line) for line in sample_gold.read_text().splitlines() if line.strip()]
    item = next(i for i in items if i["kind"] == "pairwise")
    row = client.query(f"SELECT kind, criterion, question, answer, answer_a, answer_b, reference, human_label, "
                       f"teacher, meta FROM {db}.gold_labels_latest WHERE id = {{id:String}}",
                       parameters={"id": item["id"]}).result_rows
    assert row == [("pairwise", item.get("criterion", "overall"), item["question"], None, item["answer_a"],
                    item["answer_b"], item.get("reference"), item["human_label"], item["teacher"],
                    json.dumps(item.get("meta", {}), sort_keys=True, ensure_ascii=False))]
    trace_ids = {t.trace_id: t.criterion for _, t in traces_from_gold(sample_gold)}
    joined = client.query(f"SELECT id, criterion FROM {db}.gold_by_id").result_rows
    assert dict(joined) == trace_ids


def test_bad_lines_are_reported_and_the_good_ones_imported(store, sample_gold, monkeypatch, tmp_path):
    client, settings = store
    db = settings.clickhouse.database
    good = [line for line in sample_gold.read_text().splitlines() if line.strip()][:3]
    second = json.loads(good[1])
    bad_label = json.loads(good[0]) | {"id": "bad-label", "human_label": "maybe"}
    missing = {k: v for k, v in json.loads(good[2]).items() if k != "question"} | {"id": "no-question"}
    lines = [good[0], "{not json", json.dumps(bad_label), good[1], json.dumps(missing), json.dumps(second), good[2]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _cli(monkeypatch, settings, "gold", "import", path, "--source", "mixed-set")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines()
              if line.startswith(f"{path}:") and line.split(":")[1].isdigit()]
    assert [e.split(":")[1] for e in errors] == ["2", "3", "5", "6"]  # file:line for each bad one
    assert "human_label" in errors[1] and "question" in errors[2] and "repeats line 4" in errors[3]
    assert "3 imported (3 new, 0 already present" in result.output and "4 invalid" in result.output
    rows = client.query(f"SELECT source, id FROM {db}.gold_labels FINAL ORDER BY id").result_rows
    assert rows == sorted(("mixed-set", json.loads(g)["id"]) for g in good)


def test_a_store_without_the_tables_is_a_clear_error(stack, sample_gold, monkeypatch):
    settings = stack.model_copy(update={"clickhouse": stack.clickhouse.model_copy(
        update={"database": "never_migrated"})})
    result = _cli(monkeypatch, settings, "gold", "import", sample_gold)
    assert result.exit_code == 1 and "judgeline migrate" in result.output
