"""The stored record of a judge version's deployment-gate decision (issue 16, docs/judge.md): one row of
``judge_versions``.

Contract:
- ``JudgeVersionRecord`` says which version (of which model name) was assessed for which action (``export``,
  ``deploy``, ``shadow``: served beside the live version for shadow mode, where the gate's decision is recorded but
  never stops it, or ``promote``: the shadow candidate made the live version), from which trained directory, architecture and teachers, when it was trained (``created_at``), the
  training's held-out figures (``held_out``, JSON), its figures on the human gold labels in ClickHouse (items it
  was not trained on: ``gold_n``, ``gold_accuracy``, ``gold_kappa``), the comparison with the version in service
  on the items neither was trained on, its bias meters (``judge_engine.evaluation.bias``; all of them as JSON in
  ``bias``), and the ``decision`` (accepted | refused | forced) with its ``reasons`` (one per line).
- Figures that could not be measured are None (NULL), never a made-up number. The identity is (judge_name,
  version, decided_at): every decision is its own row.
- A ``schemas.base.Message`` model: strict, immutable; ``streams.sink`` derives the table's columns from it.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from schemas.base import Message, Name, UtcDatetime, utc_now

Decision = Literal["accepted", "refused", "forced"]
Rate = Optional[float]


class JudgeVersionRecord(Message):
    judge_name: Name
    version: Name
    action: Literal["export", "deploy", "shadow", "promote"]
    model_dir: str
    arch: str = "bi"
    teacher: str = ""
    created_at: UtcDatetime
    held_out: str = "{}"
    gold_n: int = Field(ge=0)
    gold_accuracy: Rate = Field(None, ge=0, le=1)
    gold_kappa: Rate = Field(None, ge=-1, le=1)
    serving_version: str = ""
    compared_n: int = Field(0, ge=0)
    candidate_kappa_compared: Rate = Field(None, ge=-1, le=1)
    serving_kappa_compared: Rate = Field(None, ge=-1, le=1)
    longer_wins: Rate = Field(None, ge=0, le=1)
    first_wins: Rate = Field(None, ge=0, le=1)
    shorter_won_accuracy: Rate = Field(None, ge=0, le=1)
    teacher_longer_wins: Rate = Field(None, ge=0, le=1)
    human_longer_wins: Rate = Field(None, ge=0, le=1)
    bias: str = "{}"
    decision: Decision
    reasons: str = ""
    decided_at: UtcDatetime = Field(default_factory=utc_now)
