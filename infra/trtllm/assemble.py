"""Assemble the TensorRT-LLM Triton model repository from ``triton_models/trtllm``: copy, add helpers, fill templates.

Contract (standard library only: it runs inside the Triton TensorRT-LLM container, where the project is not
installed):
- ``assemble(dest, values)`` copies every model directory of ``triton_models/trtllm`` (``preprocessing``,
  ``tensorrt_llm``, ``postprocessing``, ``ensemble``, ``judge``) into ``dest`` (created; an existing model
  directory there is replaced, anything else in ``dest`` such as an engine is left alone), copies ``HELPERS``
  (``judge_engine/model/verdict_math.py``, ``judge_engine/model/generative.py``) beside every ``model.py``, and replaces each
  ``${name}`` in the copied ``config.pbtxt`` files with ``values[name]``. It raises ``KeyError`` naming every
  template name left without a value and ``ValueError`` for a value that would break the config (a quote,
  backslash or newline). It returns the copied model names.
- ``template_names(source)`` lists the ``${name}`` placeholders of the source configs.
- Command line: ``python3 infra/trtllm/assemble.py --dest DIR --set name=value ...`` (used by ``build.sh``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
SOURCE = REPO_ROOT / "triton_models" / "trtllm"
HELPERS = (REPO_ROOT / "judge_engine" / "model" / "verdict_math.py", REPO_ROOT / "judge_engine" / "model" / "generative.py")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def model_dirs(source: Path = SOURCE) -> list[Path]:
    return sorted(p for p in source.iterdir() if (p / "config.pbtxt").is_file())


def template_names(source: Path = SOURCE) -> set[str]:
    names: set[str] = set()
    for model in model_dirs(source):
        names.update(PLACEHOLDER.findall((model / "config.pbtxt").read_text()))
    return names


def fill(text: str, values: dict[str, str]) -> str:
    missing = sorted({n for n in PLACEHOLDER.findall(text) if n not in values})
    if missing:
        raise KeyError(f"no value for template name(s) {', '.join(missing)}: pass --set NAME=VALUE")
    for name, value in values.items():
        if any(c in str(value) for c in '"\\\n'):
            raise ValueError(f"value of {name} must not contain a quote, backslash or newline: {value!r}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def assemble(dest: Path, values: dict[str, str], source: Path = SOURCE, helpers=HELPERS) -> list[str]:
    dest = Path(dest)
    models = model_dirs(source)
    filled = {m.name: fill((m / "config.pbtxt").read_text(), values) for m in models}  # fail before copying
    dest.mkdir(parents=True, exist_ok=True)
    for model in models:
        target = dest / model.name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".gitkeep"))
        (target / "config.pbtxt").write_text(filled[model.name])
        for version in (v for v in target.iterdir() if v.is_dir() and v.name.isdigit()):
            if (version / "model.py").exists():
                for helper in helpers:
                    shutil.copy2(helper, version / Path(helper).name)
    return [m.name for m in models]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", required=True, type=Path, help="the model repository to write")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a template value")
    args = parser.parse_args(argv)
    values = {}
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--set needs NAME=VALUE, got {pair!r}")
        values[name] = value
    try:
        names = assemble(args.dest, values)
    except (KeyError, ValueError) as e:
        print(f"assemble: {e}", file=sys.stderr)
        return 2
    print(f"assembled {', '.join(names)} into {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
