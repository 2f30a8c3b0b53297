"""The judge's encoder as an ONNX graph for ONNX Runtime (``judgeline export --runtime onnx [--quantize int8]``).

Contract:
- ``write_encoder(model_dir, precision)`` writes ``encoder.onnx`` into a trained (or exported) judge directory:
  all-MiniLM-L6-v2 (the first ``encoder_layers`` of its layers when ``student.json`` says so) with the directory's
  fine-tuned top layers (``encoder_top.pt``) when it has them, exported with
  torch.onnx's TorchScript exporter (``dynamo=False``; eager attention, so ONNX Runtime's BERT fusions apply) with
  dynamic batch and token axes, inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64) and output
  ``last_hidden_state`` [batch, tokens, 384]; the pooling stays in ``student.py``. The graph is then optimised
  offline with ``onnxruntime.transformers.optimizer`` (attention, LayerNorm, GELU fusions: portable contrib
  operators that the CPU and CUDA providers both run), all but the residual-and-LayerNorm fusion
  (``SkipLayerNormalization``), whose CPU kernel is slower than the operators it replaces (``student.CPU_UNFUSED``;
  a CUDA session fuses them when it loads the graph). ``int8`` quantises it with
  ``onnxruntime.quantization.quantize_dynamic`` (int8 weights per output channel, activations quantised per
  batch; per-channel measured closer to fp32 than per-tensor: docs/judge.md, "ONNX Runtime").
- It records ``runtime: onnx``, ``precision`` and ``encoder_file`` in the directory's ``student.json``, so
  ``student.Judge`` serves the file; ``use_torch(model_dir)`` undoes that (the torch fp32 runtime, the default).
- Needs ``onnx`` and ``onnxruntime`` (project dependencies); works in a scratch directory and moves the finished
  file into place, so a failed export leaves the directory as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
from pathlib import Path

PRECISIONS = ("fp32", "int8")
OPSET = 17


def _meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "student.json").read_text())


def _write_meta(model_dir: Path, meta: dict) -> None:
    (model_dir / "student.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def _torch_encoder(model_dir: Path, max_length: int):
    import torch

    from judge_engine.model.student import ENCODER_TOP, Encoder

    top = None
    if (model_dir / ENCODER_TOP).is_file() and _meta(model_dir).get("finetuned_layers"):
        top = torch.load(model_dir / ENCODER_TOP, map_location="cpu", weights_only=True)
    return Encoder(max_length=max_length, top_state=top, attn_implementation="eager",
                   layers=_meta(model_dir).get("encoder_layers"))


def _export_graph(encoder, target: Path) -> None:
    import torch

    from judge_engine.model.student import ONNX_INPUTS

    class LastHidden(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = encoder.tokenizer(["a question to trace the graph with", "an answer"], padding=True, return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    with torch.no_grad():
        torch.onnx.export(LastHidden(encoder.model).eval(), tuple(sample[n] for n in ONNX_INPUTS), str(target),
                          input_names=list(ONNX_INPUTS), output_names=["last_hidden_state"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's optimizer and quantizer log every tensor at INFO on the root logger (40-odd lines in the
    middle of ``make demo``); their warnings still show."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def _optimise(source: Path, target: Path, config) -> None:
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    fusions = FusionOptions("bert")
    fusions.enable_skip_layer_norm = False  # slow on the CPU: see student.CPU_UNFUSED (CUDA sessions fuse it again)
    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=config.num_attention_heads,
                                     hidden_size=config.hidden_size, opt_level=0, optimization_options=fusions)
    model.save_model_to_file(str(target))


def _quantise(source: Path, target: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


def write_encoder(model_dir: Path, precision: str = "fp32") -> Path:
    """Write ``encoder.onnx`` (``precision`` fp32 or int8) into ``model_dir`` and record it in its student.json."""
    from judge_engine.model.student import ONNX_FILE

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (got {precision!r})")
    model_dir = Path(model_dir)
    meta = _meta(model_dir)
    encoder = _torch_encoder(model_dir, int(meta.get("max_length", 256)))
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as scratch:
        raw, optimised, quantised = (Path(scratch) / n for n in ("raw.onnx", "optimised.onnx", "int8.onnx"))
        _export_graph(encoder, raw)
        with _quiet():
            _optimise(raw, optimised, encoder.config)
            final = optimised
            if precision == "int8":
                _quantise(optimised, quantised)
                final = quantised
        shutil.move(str(final), model_dir / ONNX_FILE)
    meta.update(runtime="onnx", precision=precision, encoder_file=ONNX_FILE)
    _write_meta(model_dir, meta)
    return model_dir / ONNX_FILE


def use_torch(model_dir: Path) -> None:
    """Make ``model_dir`` serve on the torch runtime again (drops ``encoder.onnx``)."""
    from judge_engine.model.student import ONNX_FILE

    model_dir = Path(model_dir)
    meta = _meta(model_dir)
    (model_dir / ONNX_FILE).unlink(missing_ok=True)
    meta.pop("encoder_file", None)
    meta.update(runtime="torch", precision="fp32")
    _write_meta(model_dir, meta)
