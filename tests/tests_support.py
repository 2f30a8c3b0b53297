"""Paths the tests share (importable from any test module)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_GOLD = REPO_ROOT.parent / "shared" / "data" / "gold"

# 127.0.0.1, ::1 and ::ffff:127.0.0.1 as /proc/net/tcp{,6} write them
LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def listening_addresses(pid: int) -> set[str]:
    """Local addresses (hex, as /proc/net writes them) of the TCP sockets a process listens on."""
    import os

    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                found.add(cols[1].split(":")[0])
    return found


def serve_tiny_judge(stack, tiny_judge) -> str:
    """Export the session's tiny judge into the stack's model repository (once) and load it; returns its version."""
    from judge_engine.training.export import export, versions
    from stack import triton

    repo = Path(stack.stack.model_repository)
    if not versions(repo / stack.triton.model_name):
        export(tiny_judge.model_dir, repo, stack.triton.model_name)
    return triton.load_model(stack, stack.triton.model_name)


def with_perturbed_top_layer(model_dir: Path, encoder, target: Path):
    """A copy of a trained judge at ``target`` whose encoder's last layer is fine-tuned (randomly perturbed, so its
    effect is visible) and saved as ``encoder_top.pt``; returns (the perturbed layers, the heads, their metadata)."""
    import copy
    import shutil

    import torch

    from judge_engine.model.student import StudentHeads, top_layers_state

    layers = copy.deepcopy(encoder.layers[-1:])
    with torch.no_grad():
        for p in layers.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    shutil.copytree(model_dir, target)
    heads, meta = StudentHeads.load(target)
    heads.save(target, {k: v for k, v in meta.items() if k not in ("heads", "temperature")},
               encoder_top=top_layers_state(layers))
    return layers, heads, meta
