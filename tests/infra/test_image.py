"""Static checks of the worker image (Dockerfile, .dockerignore), and `judgeline export` in the image's layout.

No Docker engine runs here, so the Dockerfile is parsed: every JUDGELINE_* variable it sets is a setting or one of
``schemas.paths``'s path variables; ``JUDGELINE_TRITON_MODELS`` points where ``triton_models/`` is copied; the state
directory is the image user's own; every package pyproject.toml installs is copied; exported weights and the venv
stay out of the build context. Then the image's layout is rebuilt in a temporary directory (the packages without
``triton_models/``, as ``pip install .`` leaves them, and the template copied elsewhere) and `judgeline export`
runs there with and without the variable.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from schemas.settings import env_names

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
PATH_VARIABLES = {"JUDGELINE_TRITON_MODELS", "JUDGELINE_SHARED_DATA"}  # schemas/paths.py, not settings


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in _instructions():
        if keyword == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


def _copies() -> dict[str, str]:
    """COPY source -> destination under WORKDIR (one source per instruction, as the Dockerfile writes them)."""
    workdir = next(rest for keyword, rest in _instructions() if keyword == "WORKDIR")
    copies = {}
    for keyword, rest in _instructions():
        if keyword == "COPY":
            *sources, dest = shlex.split(rest)
            for source in sources:
                copies[source] = str(Path(workdir) / (source if dest.endswith("/") else dest))
    return copies


def test_every_judgeline_variable_of_the_image_is_known():
    names = set(env_names())
    for name in _env():
        if name.startswith("JUDGELINE_"):
            assert name in names or name in PATH_VARIABLES, f"Dockerfile ENV {name} is neither a setting nor a path"


def test_the_triton_template_is_copied_where_the_image_says():
    copies, env = _copies(), _env()
    assert copies.get("triton_models") == env["JUDGELINE_TRITON_MODELS"]
    for rel in ("judge/config.pbtxt", "judge/configs/gpu.pbtxt", "judge/model.py"):
        assert (REPO_ROOT / "triton_models" / rel).is_file()


def test_every_installed_package_is_copied_and_the_state_is_the_users():
    include = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {p.rstrip("*") for p in include["include"]}
    assert packages <= set(_copies()), f"not copied into the image: {packages - set(_copies())}"
    user = re.search(r"useradd .*?--create-home (\S+)", DOCKERFILE.read_text()).group(1)
    assert ("USER", user) in _instructions()
    assert Path(_env()["JUDGELINE_STACK__STATE_DIR"]).is_relative_to(f"/home/{user}")
    assert re.search(rf"chown -R {user} {re.escape(_env()['JUDGELINE_TRITON_MODELS'])}", DOCKERFILE.read_text())


def test_the_build_context_leaves_out_weights_and_environments():
    patterns = [p.strip().rstrip("/") for p in (REPO_ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    for path in (".venv", ".judgeline", "triton_models/judge/1", "triton_models/judge/12", ".git"):
        assert any(fnmatch.fnmatch(path, p) for p in patterns), f"{path} would be sent to the image"
    for path in ("triton_models/judge/configs", "triton_models/judge/model.py", "schemas"):
        assert not any(fnmatch.fnmatch(path, p) for p in patterns), f"{path} would be left out of the image"


@pytest.mark.integration
def test_export_works_in_the_images_layout(tmp_path, tiny_judge):
    site = tmp_path / "site-packages"  # what `pip install .` leaves: the packages, no triton_models/
    for source, dest in _copies().items():
        if (REPO_ROOT / source).is_dir() and source != "triton_models":
            shutil.copytree(REPO_ROOT / source, site / source, ignore=shutil.ignore_patterns("__pycache__"))
    template = tmp_path / "app" / "triton_models"
    shutil.copytree(REPO_ROOT / "triton_models", template,
                    ignore=lambda d, names: [n for n in names if n == "__pycache__" or n.isdigit()])
    repository = tmp_path / "models"
    base = {k: v for k, v in os.environ.items() if not k.startswith("JUDGELINE_")}
    base.update(PYTHONPATH=str(site), JUDGELINE_STACK__STATE_DIR=str(tmp_path / "state"),
                JUDGELINE_STACK__MODEL_REPOSITORY=str(repository))
    command = [sys.executable, "-m", "cli.main", "export", "--model", str(tiny_judge.model_dir), "--no-deploy"]

    without = subprocess.run(command, cwd=tmp_path, env=base, capture_output=True, text=True, timeout=300)
    assert without.returncode == 1  # the template is not beside the installed packages: the variable is needed
    assert f"the Triton model template is not at {site / 'triton_models' / 'judge'}" in without.stderr
    assert "JUDGELINE_TRITON_MODELS" in without.stderr and not repository.exists()

    # --force: no store with gold labels here, so the deployment gate is not what this test is about
    run = subprocess.run([*command, "--force"], cwd=tmp_path, env={**base, "JUDGELINE_TRITON_MODELS": str(template)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    version = repository / "judge" / "1"
    assert {"model.py", "student.py", "verdict_math.py", "heads.pt", "student.json"} <= {
        p.name for p in version.iterdir()}
    assert (version / "model.py").read_bytes() == (template / "judge" / "model.py").read_bytes()
    assert (repository / "judge" / "configs" / "gpu.pbtxt").is_file()
