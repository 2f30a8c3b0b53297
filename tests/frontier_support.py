"""Helpers shared by the frontier tests: a small made-up gold file and the replay server run as a real process."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path
from typing import Iterator

from conftest import make_settings

from doubles import frontier_replay
from schemas.gold import GoldLabel
from stack import process

# Made-up items (not from the shared sets): pairwise with and without a swapped-order verdict, one recorded in the
# swapped order only, pointwise, and one item with no verdict of gpt-4.
SYNTHETIC_ITEMS = [
    {"id": "syn-pair-1", "source": "synthetic", "kind": "pairwise", "question": "What is 2 + 2?",
     "answer_a": "4", "answer_b": "5", "reference": "4", "human_label": "A",
     "teacher": {"gpt-4": "A"}, "teacher_swapped": {"gpt-4": "A"}},
    {"id": "syn-pair-2", "source": "synthetic", "kind": "pairwise", "question": "Name a primary colour.",
     "answer_a": "Green, obviously.", "answer_b": "Red.", "human_label": "B",
     "teacher": {"gpt-4": "A"}, "teacher_swapped": {"gpt-4": "B"}},
    {"id": "syn-pair-3", "source": "synthetic", "kind": "pairwise", "question": "Say hello in French.",
     "answer_a": "Bonjour", "answer_b": "Salut", "human_label": "tie", "teacher": {"gpt-4": "tie"}},
    {"id": "syn-pair-4", "source": "synthetic", "kind": "pairwise", "question": "Which is a mammal?",
     "answer_a": "A trout.", "answer_b": "A whale.", "human_label": "B",
     "teacher": {}, "teacher_swapped": {"gpt-4": "B"}},
    {"id": "syn-point-1", "source": "synthetic", "kind": "pointwise", "criterion": "hallucination",
     "question": "Who wrote Hamlet?", "answer": "William Shakespeare.", "human_label": "pass",
     "teacher": {"gpt-4": "pass"}},
    {"id": "syn-point-2", "source": "synthetic", "kind": "pointwise", "criterion": "hallucination",
     "question": "What is the capital of Australia?", "answer": "Sydney, since 1788.", "human_label": "fail",
     "teacher": {"gpt-4": "fail"}},
    {"id": "syn-point-3", "source": "synthetic", "kind": "pointwise", "criterion": "hallucination",
     "question": "How many legs has a spider?", "answer": "Eight.", "human_label": "pass",
     "teacher": {"gpt-3.5-turbo": "pass"}},
]


def write_synthetic_gold(path: Path) -> list[GoldLabel]:
    path.write_text("".join(json.dumps(item) + "\n" for item in SYNTHETIC_ITEMS))
    return [GoldLabel(**item) for item in SYNTHETIC_ITEMS]


@contextlib.contextmanager
def replay_service(state_dir: Path, gold_files, *, faults=frontier_replay.Faults(), log_level: str = "INFO",
                   judges=None) -> Iterator[tuple[str, process.ServiceRecord]]:
    """The replay server as a process on a free port: yields (OpenAI base URL, service record); stopped by PID."""
    settings = make_settings(stack={"state_dir": state_dir}, log_level=log_level)
    record = frontier_replay.start(settings, gold_files, faults=faults, judges=judges)
    try:
        process.wait_healthy(record, lambda: frontier_replay.healthy(settings, record), timeout_s=60)
        yield record.extra["base_url"], record
    finally:
        process.stop(record)


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/stats", timeout=5) as r:
        return json.loads(r.read())


def reset_stats(base_url: str) -> None:
    request = urllib.request.Request(base_url.removesuffix("/v1") + "/stats/reset", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=5) as r:
        r.read()


class ScriptedModel:
    """A stand-in for the openai client (``FrontierJudge(client=...)``): the 'model' replies ``reply(user_text)``
    and every list of messages it was sent is kept in ``sent``."""

    def __init__(self, reply):
        from types import SimpleNamespace

        self.sent: list = []
        self._reply = reply
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=self._create))

    async def _create(self, *, messages, **_):
        from types import SimpleNamespace

        self.sent.append(messages)
        text = self._reply(messages[-1]["content"])
        return SimpleNamespace(choices=[SimpleNamespace(message=SimpleNamespace(content=text))],
                               usage=SimpleNamespace(prompt_tokens=10, completion_tokens=5))

    async def close(self):
        return None
