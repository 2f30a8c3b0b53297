"""Commands of the judge's life cycle: train, export, deploy, eval.

Contract: the commands are thin over ``judge_engine.training`` and ``judge_engine.evaluation`` and find Triton through
the settings resolved against the running stack; heavy imports stay inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cli._utils import fail as _fail
from cli._utils import fails_as, family, trained_model
from cli._utils import settings as _settings
from schemas.paths import latest_model_pointer

commands, register = family()


FINETUNE_LAYERS_DEFAULT = 1  # measured: see docs/judge.md, "Fine-tuning"


@commands.command()
def train(
    gold: list[Path] = typer.Option(..., "--gold", help="Gold-format file(s) to learn from (repeatable)."),
    teacher: list[str] = typer.Option(
        ["gpt-4"], help="Whose recorded verdict is the label (repeatable, in order of preference: the first with a "
                        "verdict on an item wins); 'human' for the human label."),
    fallback_human: bool = typer.Option(False, help="Use the human label where the teacher has no verdict."),
    out: Optional[Path] = typer.Option(None, help="Model directory (default: <state dir>/models/student-<time>)."),
    val: float = typer.Option(0.15, help="Fraction of questions held out for early stopping and calibration."),
    test: float = typer.Option(0.25, help="Fraction of questions held out for the final measurement."),
    seed: int = typer.Option(13, help="Seed of the split and of training."),
    swap: bool = typer.Option(True, help="Swap augmentation: each pair in both orders, label swapped."),
    reference_drop: bool = typer.Option(True, help="Items with a reference also train without it."),
    epochs: int = typer.Option(60, help="At most this many epochs (early stopping on the validation loss)."),
    limit_per_file: Optional[int] = typer.Option(None, help="Use only the first N items of each source."),
    sample_per_file: Optional[int] = typer.Option(
        None, min=1, help="Use a random sample (seeded) of N items of each file (large teacher sets)."),
    length_balance: bool = typer.Option(
        False, help="Length control: keep as many pairs the longer answer won as pairs the shorter one won."),
    skip_invalid: bool = typer.Option(False, help="Leave out lines that do not parse instead of stopping."),
    finetune_layers: int = typer.Option(
        FINETUNE_LAYERS_DEFAULT, min=0, max=6,
        help="Fine-tune the encoder's top N layers with the heads (0: frozen encoder, heads only)."),
    finetune_epochs: int = typer.Option(2, min=1, help="Epochs of fine-tuning (the best on validation is kept)."),
    arch: str = typer.Option("bi", help="bi: question and answers embedded apart; cross: each answer read jointly "
                                        "with the question (a cross-encoder)."),
    max_length: int = typer.Option(256, min=16, max=512, help="Tokens per encoded text (longer ones are cut)."),
    encoder_layers: int = typer.Option(
        6, min=1, max=6, help="Run the encoder's first N of 6 layers: fewer cost less per token (4: the CPU default's "
                              "depth, about 0.6 of the time per pair; docs/judge.md)."),
) -> None:
    """Distil the student judge from recorded teacher verdicts; calibrate and measure it on held-out questions."""
    from datetime import datetime

    from judge_engine.dataset import GoldFileError
    from judge_engine.training.trainer import TrainConfig
    from judge_engine.training.trainer import train as run_training

    settings = _settings()
    out = out or settings.state_dir / "models" / f"student-{datetime.now():%Y%m%d-%H%M%S}"
    cfg = TrainConfig(gold=tuple(gold), out=out, teacher=tuple(teacher), fallback_human=fallback_human,
                      val_fraction=val, sample_per_file=sample_per_file, length_balance=length_balance,
                      test_fraction=test, seed=seed, swap=swap, reference_drop=reference_drop, epochs=epochs,
                      limit_per_file=limit_per_file, skip_invalid=skip_invalid, finetune_layers=finetune_layers,
                      finetune_epochs=finetune_epochs, arch=arch, max_length=max_length,
                      encoder_layers=encoder_layers)
    typer.echo(f"training on {', '.join(map(str, gold))} (labels: {' then '.join(teacher)})")
    try:
        result = run_training(cfg, log=typer.echo)
    except (GoldFileError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    pointer = latest_model_pointer(settings.state_dir)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(result.model_dir.resolve()))
    for kind, m in result.test.items():
        typer.echo(
            f"  held-out {kind} (n={m['n']}, labels {m['label_sources']}): accuracy vs those labels "
            f"{100 * m['accuracy_vs_training_label']:.1f}%, vs human {100 * m['accuracy_vs_human']:.1f}% (the labels "
            f"themselves {100 * m['training_label_accuracy_vs_human']:.1f}%, majority label "
            f"{100 * m['majority_baseline_vs_human']:.1f}%), kappa vs human {m['kappa_vs_human']:.3f}, swap "
            f"consistency {100 * m['swap_consistency']:.1f}%, ECE {m['ece_uncalibrated']:.3f} -> {m['ece']:.3f} "
            f"(T={result.temperature[kind]:.2f})"
        )
    typer.echo(f"  took {result.seconds}; model in {result.model_dir} (reliability.png, training_report.json)")
    typer.echo("next: judgeline export")


def _gate(settings, candidate: Path, version: str, action: str, force: bool) -> None:
    """Run the deployment gate (``operations.gate``), print its figures, stop unless it allowed the version."""
    from operations.analytics import StoreNotReady, connect_store
    from operations.gate import assess
    from stack.triton import model_repository

    try:
        client = connect_store(settings)
    except StoreNotReady as e:
        if force:
            typer.echo(f"gate: NOT CHECKED and nothing recorded ({e}); going on because of --force", err=True)
            return
        _fail(f"the deployment gate needs the gold labels in ClickHouse: {e} (or pass --force)")
    decision = assess(settings, client, candidate, model_repository(settings), version, action, force)
    typer.echo(decision.summary())
    if not decision.allowed:
        _fail(f"judge version {version} refused by the deployment gate (recorded in judge_versions); improve it, "
              "import more gold labels, or pass --force to override")


@commands.command()
def export(
    model: Optional[Path] = typer.Option(None, help="Trained model directory (default: the last `judgeline train`)."),
    version: Optional[int] = typer.Option(None, help="Version number (default: the next free one)."),
    deploy_now: bool = typer.Option(True, "--deploy/--no-deploy", help="Load it into the running Triton, if any."),
    force: bool = typer.Option(False, help="Export even if the deployment gate refuses it (recorded as forced)."),
    runtime: str = typer.Option("torch", help="The encoder's runtime in the version: torch, or onnx (ONNX Runtime: "
                                              "encoder.onnx, fine-tuned layers included; docs/judge.md)."),
    quantize: Optional[str] = typer.Option(None, help="With --runtime onnx: int8 (dynamic quantisation of the "
                                                      "encoder's weights); default fp32."),
) -> None:
    """Write a trained judge as the next version of the Triton model (and load it into a running Triton), if it
    clears the deployment gate on the gold labels in ClickHouse (kappa >= the bar, no worse than the version in
    service). The gate judges the version's own files, on the runtime it will be served on."""
    import tempfile

    from judge_engine.training.export import export as run_export
    from judge_engine.training.export import check_template, prepare
    from judge_engine.training.onnx_export import PRECISIONS
    from operations.shadow import next_version
    from stack.triton import model_repository

    settings = _settings()
    model = trained_model(settings, model)
    try:
        check_template()  # before the gate: a misplaced template is a set-up error, not a judgement of the version
    except FileNotFoundError as e:
        _fail(str(e))
    if runtime not in ("torch", "onnx"):
        _fail(f"--runtime must be torch or onnx (got {runtime!r})")
    precision = quantize or "fp32"
    if precision not in PRECISIONS:
        _fail(f"--quantize must be int8 (got {quantize!r})")
    if precision != "fp32" and runtime != "onnx":
        _fail("--quantize int8 needs --runtime onnx (the torch runtime serves fp32)")
    repository = model_repository(settings)
    if version is None:  # one more than any live or shadow version: a number names one trained judge
        version = next_version(settings)
    with tempfile.TemporaryDirectory(prefix="judgeline-export-") as scratch:
        try:  # the version as it will be served, so the gate assesses exactly those files
            candidate = prepare(model, Path(scratch) / "candidate", runtime, precision)
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e))
        if runtime == "onnx":
            typer.echo(f"encoder exported to ONNX ({precision})")
        _gate(settings, candidate, str(version), "export", force)
        try:
            target = run_export(candidate, repository, settings.triton.model_name, version)
        except (FileNotFoundError, FileExistsError) as e:
            _fail(str(e))
    typer.echo(f"exported {model} as {target} (runtime {runtime}, {precision})")
    if deploy_now:
        _load_newest(settings, force)


@commands.command()
def deploy(
    force: bool = typer.Option(False, help="Load the version even if the deployment gate refuses it."),
) -> None:
    """Load the newest version of the judge into the running Triton (repository API; traffic keeps flowing), once
    it has cleared the deployment gate (an export's decision stands; otherwise it is assessed now)."""
    _load_newest(_settings(), force)


def _load_newest(settings, force: bool) -> None:
    from judge_engine.training.export import versions
    from operations.analytics import StoreNotReady, connect_store
    from operations.gate import recorded_decision
    from stack import triton
    from stack.services import running_service

    if running_service(settings, "triton") is None and not settings.triton.http_url:
        _fail("no Triton is running (judgeline up)")
    name = settings.triton.model_name
    newest = (versions(triton.model_repository(settings) / name) or [None])[-1]
    if newest is not None:
        try:
            decided = recorded_decision(connect_store(settings), settings.clickhouse.database, name, str(newest))
        except StoreNotReady:
            decided = None  # _gate says what is missing
        if decided not in ("accepted", "forced"):
            _gate(settings, triton.model_repository(settings) / name / str(newest), str(newest), "deploy", force)
    with fails_as(f"loading {name} into Triton at {settings.triton.http_url}"):
        version = triton.load_model(settings, name)
    typer.echo(f"Triton at {settings.triton.http_url} serves {name} version {version}")


@commands.command(name="eval")
def eval_(
    gold: Path = typer.Option(..., "--gold", help="Gold-format file to measure the served judge on."),
    frontier: Optional[str] = typer.Option(None, help="Teacher in the file acting as the frontier judge "
                                                      "(default: the judge's own teacher, else gpt-4)."),
    threshold: Optional[float] = typer.Option(None, help="Routing threshold to report (default: the setting)."),
    out: Path = typer.Option(Path("metrics.json"), help="JSON report; PNGs are written beside it."),
    include_trained: bool = typer.Option(False, help="Also score items the judge was trained on (not honest)."),
    skip_invalid: bool = typer.Option(False, help="Leave out lines that do not parse instead of stopping."),
    policy: bool = typer.Option(False, "--policy", help="Also simulate the routing-policy controller over the file "
                                                         "in order (docs/routing.md)."),
    update_every: int = typer.Option(50, min=1, help="With --policy: re-fit the policy every N items."),
) -> None:
    """Measure the served judge on a gold file: agreement with humans and teacher, ECE, cascade curve."""
    from judge_engine.dataset import GoldFileError
    from judge_engine.evaluation.evaluate import evaluate, format_table
    from stack.triton import model_repository

    settings = _settings()
    with fails_as(f"judging through Triton at {settings.triton.url}"):
        try:
            report = evaluate(settings, gold, frontier=frontier, threshold=threshold, out=out,
                              include_trained=include_trained, skip_invalid=skip_invalid,
                              repository=model_repository(settings), policy=policy, update_every=update_every)
        except (GoldFileError, FileNotFoundError, ValueError) as e:
            _fail(str(e))
    typer.echo(format_table(report))
    stem = out.with_suffix("")
    typer.echo(f"wrote {out}, {stem}.cascade.png, {stem}.reliability.png" + (f", {stem}.policy.png" if policy else ""))

