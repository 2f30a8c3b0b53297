"""Shared fixtures.

- ``clean_env`` (autouse): no JUDGELINE_* variable or .env file from the developer's shell leaks into a test.
- ``stack`` (session): the real embedded stack (Tansu broker, chDB store server, Triton) started once in a temporary
  state directory and stopped by PID at the end. Triton serves a copy of ``triton_models/`` plus the test models
  under ``tests/triton_test_models/``.
- ``sample_gold`` / ``tiny_judge`` (session): the project's synthetic gold sample and a student judge trained on it
  (seconds), for the tests of training, export and serving.
- ``store``: a clickhouse-connect client on the session store with a database of the test's own (dropped after), and
  the settings that name it; migrations applied.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from tests_support import REPO_ROOT

TEST_MODELS = Path(__file__).resolve().parent / "triton_test_models"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("JUDGELINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file is read


def make_settings(**groups):
    """Settings with the given groups (dicts of fields), independent of the environment."""
    from schemas.settings import Settings

    return Settings(**groups)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from stack import services as stack_mod

    state = tmp_path_factory.mktemp("stack")
    models = state / "models"
    # the repository's models without exported versions (a developer's trained judge is not the tests' business)
    shutil.copytree(REPO_ROOT / "triton_models", models,
                    ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.startswith(".export-")
                                             or (n.isdigit() and Path(d).name == "judge")
                                             or n.endswith("_shadow")])  # nor a shadow candidate
    for model in TEST_MODELS.iterdir():
        shutil.copytree(model, models / model.name)
    settings = make_settings(
        stack={"state_dir": state, "model_repository": models},
        clickhouse={"database": "judgeline_session"},
    )
    try:
        stack_mod.up(settings, log=lambda *_: None)
    except BaseException:
        stack_mod.down(settings, log=lambda *_: None)
        raise
    yield stack_mod.effective_settings(settings)
    stack_mod.down(settings, log=lambda *_: None)


@pytest.fixture
def store(stack):
    from stack.migrate import migrate
    from streams.clickhouse import connect

    database = f"t_{uuid.uuid4().hex[:12]}"
    settings = stack.model_copy(update={"clickhouse": stack.clickhouse.model_copy(update={"database": database})})
    client = connect(settings)
    migrate(client, database)
    yield client, settings
    client.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(scope="session")
def sample_gold(tmp_path_factory):
    from judge_engine.training.sample import write_sample

    path = tmp_path_factory.mktemp("sample") / "sample.jsonl"
    write_sample(path, n_pairwise=160, n_pointwise=300)
    return path


@pytest.fixture(scope="session")
def sample_items(sample_gold):
    """The sample's items as the dicts the judge takes (read-only: copy one before changing it)."""
    from judge_engine.dataset import load_gold

    return [i.model_dump() for i in load_gold([sample_gold]).items]


@pytest.fixture(scope="session")
def tiny_judge(sample_gold, tmp_path_factory):
    from judge_engine.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("judge") / "model"
    cfg = TrainConfig(gold=(sample_gold,), out=out, progress=False, epochs=40, val_fraction=0.2, test_fraction=0.25)
    return train(cfg, log=lambda *_: None)
