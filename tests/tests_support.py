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


def always_a_judge(tiny_judge, tmp_path) -> Path:
    """A real but useless judge: the tiny judge with its pairwise output layer zeroed, so it says A whatever it
    reads (kappa 0 against the humans); its pointwise head is the tiny judge's."""
    import shutil

    import torch

    bad = tmp_path / "always-a"
    shutil.copytree(tiny_judge.model_dir, bad)
    state = torch.load(bad / "heads.pt", weights_only=True)
    last = max(int(k.split(".")[1]) for k in state if k.startswith("pairwise."))
    state[f"pairwise.{last}.weight"].zero_()
    state[f"pairwise.{last}.bias"].copy_(torch.tensor([1.0, 0.0, 0.0]))
    torch.save(state, bad / "heads.pt")
    return bad


def run_cli(monkeypatch, settings, repository, *args, **env):
    """``judgeline ARGS`` in process (typer's runner) on the store database and model repository of ``settings``
    (the session stack's state directory), with ``env`` as extra JUDGELINE_* variables."""
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("JUDGELINE_STACK__STATE_DIR", str(settings.stack.state_dir))
    monkeypatch.setenv("JUDGELINE_CLICKHOUSE__DATABASE", settings.clickhouse.database)
    monkeypatch.setenv("JUDGELINE_STACK__MODEL_REPOSITORY", str(repository))
    monkeypatch.delenv("JUDGELINE_GATE__MIN_KAPPA", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return CliRunner().invoke(app, list(map(str, args)))


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
