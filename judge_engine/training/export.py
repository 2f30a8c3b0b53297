"""`judgeline export`: turn a trained student directory into the next version of the Triton ``judge`` model.

Contract:
- Writes ``<repository>/<model_name>/<version>/`` with the trained files (``heads.pt``, ``student.json``,
  ``encoder_top.pt`` when the encoder's top layers were fine-tuned, ``novelty.npz`` when training built one), the
  serving code (``model.py`` from ``triton_models/judge/``, ``student.py``, ``verdict_math.py``, ``novelty.py`` and
  ``thread_pools.py`` from ``judge_engine/``) and nothing else; the version is one more than the highest present
  (Triton versions are integers) unless one is given, and an existing version is never overwritten.
- The directory is assembled under a hidden name and renamed into place, so a running Triton never sees half a
  version. The model's ``config.pbtxt`` (CPU) and ``configs/gpu.pbtxt`` are copied from the repository's
  ``triton_models/judge/`` when the target repository has none, with the model name set. The template is found
  through ``schemas.paths`` (``JUDGELINE_TRITON_MODELS`` where the packages are installed without it, as in the
  image); when it is missing the error says so and names that variable, before anything is written.
- ``runtime`` picks the encoder's runtime in the version: None keeps the trained directory's (``torch`` unless it
  was prepared with ``prepare``), ``onnx`` writes ``encoder.onnx`` in ``precision`` fp32 or int8
  (``onnx_export.write_encoder``), ``torch`` serves on the transformers model. ``prepare`` makes that copy of a
  trained directory outside the repository, so the deployment gate can assess exactly the files that will be served
  before anything is exported.
- ``student.json`` in the version records the version number; serving the new version needs a (re)load through
  Triton's repository API (``judgeline up`` loads it at start; ``judgeline deploy`` loads it into a running server).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from schemas import paths

TEMPLATE_DIR = paths.TRITON_TEMPLATE
SERVING_FILES = {
    "model.py": TEMPLATE_DIR / "model.py",
    "student.py": paths.MODEL_CODE / "student.py",
    "verdict_math.py": paths.MODEL_CODE / "verdict_math.py",
    "novelty.py": paths.MODEL_CODE / "novelty.py",
    "thread_pools.py": paths.MODEL_CODE / "thread_pools.py",
}
TRAINED_FILES = ("heads.pt", "student.json")
# encoder_top.pt: written when training fine-tuned the encoder's last layers; novelty.npz: the version's novelty
# index (judge_engine.model.novelty), absent from judges trained before it existed
# encoder.onnx: the ONNX Runtime encoder of a directory made by ``prepare`` (judge_engine.training.onnx_export)
OPTIONAL_TRAINED_FILES = ("encoder_top.pt", "novelty.npz", "encoder.onnx")


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _ensure_config(model_dir: Path, model_name: str) -> None:
    for rel in ("config.pbtxt", "configs/gpu.pbtxt"):
        target = model_dir / rel
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        text = (TEMPLATE_DIR / rel).read_text().replace('name: "judge"', f'name: "{model_name}"', 1)
        target.write_text(text)


def check_template() -> None:
    """Raise ``FileNotFoundError`` naming the fix when the Triton model template cannot be found."""
    if not (TEMPLATE_DIR / "config.pbtxt").is_file():
        raise FileNotFoundError(
            f"the Triton model template is not at {TEMPLATE_DIR}; set JUDGELINE_TRITON_MODELS to the directory that "
            "holds the repository's triton_models/ (the image sets it)")


def _check_trained(trained: Path) -> None:
    missing = [f for f in TRAINED_FILES if not (trained / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{trained} is not a trained judge (missing {', '.join(missing)}); run `judgeline train` first"
        )


def _copy_trained(trained: Path, target: Path) -> None:
    for name in TRAINED_FILES + OPTIONAL_TRAINED_FILES:
        if (trained / name).is_file():
            shutil.copy2(trained / name, target / name)


def _set_runtime(directory: Path, runtime: str | None, precision: str) -> None:
    from judge_engine.model.student import RUNTIMES
    from judge_engine.training import onnx_export

    if runtime is None:
        if precision != "fp32":
            raise ValueError(f"precision {precision!r} needs the onnx runtime (--runtime onnx)")
        return
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)} (got {runtime!r})")
    if runtime == "onnx":
        onnx_export.write_encoder(directory, precision)
    elif precision != "fp32":
        raise ValueError(f"the torch runtime serves fp32 only (got precision {precision!r}); use --runtime onnx")
    else:
        onnx_export.use_torch(directory)


def prepare(trained: Path, target: Path, runtime: str | None = None, precision: str = "fp32") -> Path:
    """A copy of the trained judge in ``target`` (a new directory) with the encoder runtime it will be served on."""
    trained, target = Path(trained), Path(target)
    _check_trained(trained)
    target.mkdir(parents=True)
    _copy_trained(trained, target)
    _set_runtime(target, runtime, precision)
    return target


def export(trained: Path, repository: Path, model_name: str = "judge", version: int | None = None,
           runtime: str | None = None, precision: str = "fp32") -> Path:
    trained = Path(trained)
    check_template()
    _check_trained(trained)
    model_dir = Path(repository) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    _ensure_config(model_dir, model_name)
    if version is None:
        version = (versions(model_dir) or [0])[-1] + 1
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} exists; versions are never overwritten (omit --version to take the next)")
    staging = model_dir / f".export-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _copy_trained(trained, staging)
        _set_runtime(staging, runtime, precision)
        for name, source in SERVING_FILES.items():
            shutil.copy2(source, staging / name)
        meta = json.loads((staging / "student.json").read_text())
        meta["model_name"], meta["model_version"] = model_name, str(version)
        (staging / "student.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def trained_on(repository: Path, model_name: str, version: str | int) -> set[str] | None:
    """Fingerprints of the items a served version was trained or calibrated on; None when not readable here."""
    meta = Path(repository) / model_name / str(version) / "student.json"
    if not meta.is_file():
        return None
    return set(json.loads(meta.read_text()).get("trained_on", []))
