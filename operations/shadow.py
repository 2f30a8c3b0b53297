"""Shadow mode's life cycle (docs/judge.md, "Shadow mode"): serve a candidate judge version beside the live one,
stop it, promote it.

Contract:
- The candidate is a version of a Triton model of its own, ``settings.shadow_model_name`` (``judge_shadow`` by
  default), in the live model's repository. The live model's ``latest`` version policy never sees it, so neither a
  reload of the live model (``judgeline deploy``) nor a restarted Triton (``judgeline up`` loads every model that
  has a version) makes it the live judge. Its number is one more than any version of either model, retired shadow
  candidates included, so a version number names one trained judge, shadowed or live (``next_version``). One
  candidate at a time: a candidate replaced, stopped or promoted is moved to ``<shadow model>/retired/<version>``
  (Triton ignores a directory whose name is not a number; the files stay for inspection).
- ``start(settings, trained, client, log)``: when a store ``client`` is given, the deployment gate assesses the
  candidate and its decision is recorded in ``judge_versions`` with action ``shadow`` (never enforced: scoring live
  traffic apart is how a candidate that the gold labels cannot yet settle earns its place; the gate applies at
  promotion). Then the trained directory is exported as the shadow model's next version, loaded into the running
  Triton when ``load`` (Triton answers with it once it is ready), and earlier candidates are retired.
  Returns a ``ShadowStart`` (version, the gate's ``Decision`` or None, the version Triton serves or None).
- ``stop(settings, unload)``: unloads the shadow model and retires its version directories; returns their versions.
- ``promote(settings, client, force, load)``: the candidate must clear the deployment gate (a recorded ``accepted``
  or ``forced`` decision stands; otherwise it is assessed now with action ``promote`` and refused unless
  ``force``: ``PromotionRefused``); then it is exported under the same version number into the live model, which
  is reloaded (Triton switches once the version is ready), and the shadow stopped. Refused beforehand when no
  candidate is in shadow or when the live model already has that or a higher version (it would not be served).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from schemas.settings import Settings


class ShadowError(RuntimeError):
    """A shadow command cannot go on; the message names the fix."""


class PromotionRefused(ShadowError):
    pass


@dataclass
class ShadowStart:
    version: int
    decision: Any | None  # operations.gate.Decision, or None when no store was given
    served: str | None  # the version Triton serves as the shadow model, or None when not loaded


def _repository(settings: Settings) -> Path:
    from stack.triton import model_repository

    return model_repository(settings)


def candidates(settings: Settings) -> list[int]:
    """The shadow model's version directories, oldest first."""
    from judge_engine.training.export import versions

    return versions(_repository(settings) / settings.shadow_model_name)


def _retired(settings: Settings) -> Path:
    return _repository(settings) / settings.shadow_model_name / "retired"


def _retire(settings: Settings, version: int) -> None:
    retired = _retired(settings)
    retired.mkdir(parents=True, exist_ok=True)
    target = retired / str(version)
    if target.exists():
        shutil.rmtree(target)
    (_repository(settings) / settings.shadow_model_name / str(version)).rename(target)


def next_version(settings: Settings) -> int:
    """One more than any version of the live or the shadow model, retired candidates included."""
    from judge_engine.training.export import versions

    repo = _repository(settings)
    taken = (versions(repo / settings.triton.model_name) + versions(repo / settings.shadow_model_name)
             + versions(_retired(settings)))
    return max(taken, default=0) + 1


def start(settings: Settings, trained: Path, client: Any | None = None, *, load: bool = True,
          log: Callable[[str], None] = print) -> ShadowStart:
    from judge_engine.training.export import export
    from operations.gate import assess
    from stack import triton

    repo = _repository(settings)
    earlier = candidates(settings)
    version = next_version(settings)
    decision = None
    if client is not None:
        decision = assess(settings, client, Path(trained), repo, str(version), "shadow")
    target = export(Path(trained), repo, settings.shadow_model_name, version)
    log(f"exported {trained} as {target} (the shadow model; the live model {settings.triton.model_name} is "
        "untouched)")
    served = triton.load_model(settings, settings.shadow_model_name) if load else None
    for old in earlier:
        _retire(settings, old)
    return ShadowStart(version, decision, served)


def stop(settings: Settings, *, unload: bool = True) -> list[int]:
    from stack import triton

    if unload:
        triton.unload_model(settings, settings.shadow_model_name)
    removed = candidates(settings)
    for version in removed:
        _retire(settings, version)
    return removed


def promote(settings: Settings, client: Any | None, *, force: bool = False, load: bool = True,
            log: Callable[[str], None] = print) -> int:
    from judge_engine.training.export import export, versions
    from operations.gate import assess, recorded_decision
    from stack import triton

    repo = _repository(settings)
    live_name, shadow_name = settings.triton.model_name, settings.shadow_model_name
    shadowed = candidates(settings)
    if not shadowed:
        raise ShadowError(f"no candidate is in shadow ({repo / shadow_name} holds no version): start one with "
                          "`judgeline shadow start --model DIR`")
    version = shadowed[-1]
    live = versions(repo / live_name)
    if live and live[-1] >= version:
        raise ShadowError(f"the live model {live_name} already has version {live[-1]}, not below the candidate's "
                          f"{version}: promoting it would not serve it; shadow the candidate again "
                          "(`judgeline shadow start`) to give it a new number")
    candidate_dir = repo / shadow_name / str(version)
    if client is None:
        if not force:
            raise PromotionRefused("the deployment gate needs the gold labels in ClickHouse, which is not reachable "
                                   "(or pass --force)")
        log("gate: NOT CHECKED and nothing recorded (no store); going on because of --force")
    else:
        decided = recorded_decision(client, settings.clickhouse.database, live_name, str(version))
        if decided in ("accepted", "forced"):
            log(f"gate: version {version} was {decided} before; promoting on that decision")
        else:
            decision = assess(settings, client, candidate_dir, repo, str(version), "promote", force)
            log(decision.summary())
            if not decision.allowed:
                raise PromotionRefused(f"judge version {version} refused by the deployment gate (recorded in "
                                       "judge_versions); keep it in shadow, improve it, or pass --force to override")
    target = export(candidate_dir, repo, live_name, version)
    log(f"copied the candidate to {target}")
    if load:
        served = triton.load_model(settings, live_name)
        if served != str(version):
            raise ShadowError(f"Triton serves {live_name} version {served}, not the promoted {version}")
    stop(settings, unload=load)
    return version
