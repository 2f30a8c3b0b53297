"""A judge version exported with ONNX Runtime as its encoder, served by the real Triton (the serving venv has
onnxruntime) and gated by `judgeline export --runtime onnx --quantize int8` on the gold labels in the real store."""

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from judge_engine.clients.triton_client import TritonJudge
from judge_engine.dataset import load_gold
from judge_engine.model.student import Judge
from judge_engine.training.export import export
from stack import triton

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore")]
MODEL = "judge_onnx"


@pytest.fixture(scope="module")
def served(stack, tiny_judge):
    target = export(tiny_judge.model_dir, Path(stack.stack.model_repository), MODEL, runtime="onnx")
    assert triton.load_model(stack, MODEL) == target.name
    return stack.model_copy(update={"triton": stack.triton.model_copy(update={"model_name": MODEL})}), target


def test_onnx_version_served_by_triton_judges_like_it_does_in_process(served, tiny_judge, sample_gold):
    settings, version_dir = served
    items = load_gold([sample_gold]).items[:40] + load_gold([sample_gold]).items[-30:]  # both kinds

    async def run():
        async with TritonJudge(settings.triton, max_batch_size=16) as client:
            return await client.judge(items)

    results = asyncio.run(run())
    rows = [i.model_dump() for i in items]
    local = Judge(version_dir).judge(rows)
    torch_labels = [v["label"] for v in Judge(tiny_judge.model_dir).judge(rows)]
    assert json.loads((version_dir / "student.json").read_text())["runtime"] == "onnx"
    assert [r.label for r in results] == [v["label"] for v in local] == torch_labels
    for r, ref in zip(results, local):
        assert (r.model_name, r.model_version) == (MODEL, version_dir.name)
        assert r.confidence == pytest.approx(ref["confidence"], abs=1e-5)
        assert r.novelty == pytest.approx(ref["novelty"], abs=1e-4)


def test_cli_exports_an_int8_version_the_gate_judged_with_its_own_encoder(store, tiny_judge, sample_gold, tmp_path,
                                                                          monkeypatch):
    client, settings = store
    repo = tmp_path / "repository"
    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(settings.stack.state_dir))
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", settings.clickhouse.database)
    monkeypatch.setenv("JUDGELINE_STACK__MODEL_REPOSITORY", str(repo))
    cli = lambda *a: CliRunner().invoke(app, list(map(str, a)))  # noqa: E731
    done = cli("export", "--model", tiny_judge.model_dir, "--quantize", "int8", "--no-deploy")
    assert done.exit_code == 1 and "--runtime onnx" in done.output and not (repo / "judge").exists()
    assert cli("gold", "import", sample_gold).exit_code == 0
    done = cli("export", "--model", tiny_judge.model_dir, "--runtime", "onnx", "--quantize", "int8", "--no-deploy")
    assert done.exit_code == 0, done.output
    version = repo / "judge" / "1"
    meta = json.loads((version / "student.json").read_text())
    assert (meta["runtime"], meta["precision"]) == ("onnx", "int8") and (version / "encoder.onnx").is_file()
    assert not (tiny_judge.model_dir / "encoder.onnx").exists()  # the trained directory is left as it was
    row = client.query(f"SELECT decision, gold_n FROM {settings.clickhouse.database}.judge_versions_latest "
                       "WHERE version = '1'").result_rows
    assert row and row[0][0] == "accepted" and row[0][1] > 0 and "encoder exported to ONNX (int8)" in done.output
