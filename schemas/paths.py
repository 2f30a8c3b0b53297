"""Where judgeline finds files it does not get on the command line: one module for every such path.

Contract:
- ``SOURCE_ROOT`` is the directory that holds the packages (a checkout, or ``/app`` in the image). The Triton model
  template (``TRITON_MODELS``: the repository's ``triton_models/``, ``TRITON_TEMPLATE``: its ``judge`` model) and the
  student's serving code (``MODEL_CODE``: ``judge_engine/model/``, copied into every exported version) are found
  from it; ``JUDGELINE_TRITON_MODELS`` overrides the template repository (an installed wheel keeps no
  ``triton_models/``; the image copies it and sets this variable).
- ``SHARED_DATA`` is ``../shared/data`` beside the checkout (the shared gold sets and training data, never copied
  into the tree), overridable with ``JUDGELINE_SHARED_DATA``; ``SHARED_GOLD`` and ``SHARED_TRAIN`` its folders.
- ``CACHE_DIR`` is ``$XDG_CACHE_HOME/judgeline`` (default ``~/.cache/judgeline``): embeddings, the Triton serving
  venv; shared by every checkout on a machine.
- ``latest_model_pointer(state_dir)``: the file in a state directory that names the last trained judge (written by
  ``judgeline train`` and the demo's training, read where a command defaults to "the last trained judge").
These are locations, not settings of a deployment: the runtime settings (``schemas.settings``) say where the
state directory and the served model repository are.
"""

from __future__ import annotations

import os
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parent.parent
TRITON_MODELS = Path(os.environ.get("JUDGELINE_TRITON_MODELS") or SOURCE_ROOT / "triton_models")
TRITON_TEMPLATE = TRITON_MODELS / "judge"
MODEL_CODE = SOURCE_ROOT / "judge_engine" / "model"
SHARED_DATA = Path(os.environ.get("JUDGELINE_SHARED_DATA") or SOURCE_ROOT.parent / "shared" / "data")
SHARED_GOLD = SHARED_DATA / "gold"
SHARED_TRAIN = SHARED_DATA / "train"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "judgeline"


def latest_model_pointer(state_dir: Path) -> Path:
    return Path(state_dir) / "models" / "LATEST"
