"""`judgeline export`: numbered versions written whole, never overwritten, with the serving code beside them."""

import json

import pytest

from judge_engine.training.export import export, trained_on, versions


def test_versions_count_up_and_carry_everything_triton_needs(tiny_judge, tmp_path):
    repo = tmp_path / "models"
    first = export(tiny_judge.model_dir, repo, "judge")
    second = export(tiny_judge.model_dir, repo, "judge")
    assert (first.name, second.name) == ("1", "2") and versions(repo / "judge") == [1, 2]
    assert sorted(p.name for p in first.iterdir()) == ["heads.pt", "model.py", "novelty.npz", "novelty.py",
                                                       "student.json", "student.py", "thread_pools.py",
                                                       "verdict_math.py"]
    assert json.loads((second / "student.json").read_text())["model_version"] == "2"
    assert (repo / "judge" / "config.pbtxt").exists() and (repo / "judge" / "configs" / "gpu.pbtxt").exists()
    assert not [p for p in (repo / "judge").iterdir() if p.name.startswith(".export-")]
    assert trained_on(repo, "judge", 1) and trained_on(repo, "judge", 9) is None


def test_model_name_is_written_into_a_new_config(tiny_judge, tmp_path):
    export(tiny_judge.model_dir, tmp_path, "judge_b")
    assert 'name: "judge_b"' in (tmp_path / "judge_b" / "config.pbtxt").read_text()


def test_refuses_to_overwrite_or_to_export_a_non_model(tiny_judge, tmp_path):
    export(tiny_judge.model_dir, tmp_path, "judge", version=3)
    with pytest.raises(FileExistsError, match="never overwritten"):
        export(tiny_judge.model_dir, tmp_path, "judge", version=3)
    with pytest.raises(FileNotFoundError, match="judgeline train"):
        export(tmp_path / "nothing", tmp_path, "judge")
