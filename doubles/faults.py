"""The frontier replay's fault injection, declared once: the ``Faults`` fields are also its command-line options.

Contract:
- ``Faults`` (frozen): fixed and jittered latency, the fractions of requests answered 429 (with Retry-After) and
  500, the Retry-After of an injected 429, and the jitter's seed. Fractions must lie in [0, 1] and durations be
  >= 0, else ``ValueError`` naming the field.
- Each field's ``metadata["help"]`` is its option's help: ``judgeline frontier-replay`` gets one option per field
  (``--latency-ms`` for ``latency_ms``), and ``to_args()`` renders a ``Faults`` as those options, which is how the
  server is started as a process (``doubles.frontier_replay.start``). Nothing else declares them.
- ``crash_on_key(key)`` is a fault hook of the inline agent (``judgeline worker inline --crash-agent-on-key KEY``,
  the fault suite's only): called with each batch's records (``Incoming``) once they are taken and before they
  are judged, it raises ``AgentCrash`` on the first batch holding a message with that key (once), outside every
  guarded path, the way a bug in the agent would; the message names the batch's offsets as JSON
  (``{partition: [first, last]}``) so a test can check that none of them was committed.
- Imports only the standard library, so the CLI can read the fields without loading the server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Callable, Sequence


def _option(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Faults:
    latency_ms: float = _option(0.0, "Fixed latency added to every chat completion.")
    jitter_ms: float = _option(0.0, "Uniform random extra latency, up to this much.")
    rate_limit_fraction: float = _option(0.0, "Fraction of requests answered 429 with Retry-After.")
    server_error_fraction: float = _option(0.0, "Fraction of requests answered 500.")
    retry_after_s: float = _option(1.0, "The Retry-After of an injected 429.")
    seed: int = _option(0, "Seed of the latency jitter.")

    def __post_init__(self) -> None:
        for name in ("rate_limit_fraction", "server_error_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)!r}")
        for name in ("latency_ms", "jitter_ms", "retry_after_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def to_args(self) -> list[str]:
        args: list[str] = []
        for f in fields(self):
            args += [f"--{f.name.replace('_', '-')}", str(getattr(self, f.name))]
        return args


class AgentCrash(RuntimeError):
    """The failure ``crash_on_key`` injects."""


CRASH_MESSAGE = "injected agent crash on the batch of key"


def crash_on_key(key: str) -> Callable[[Sequence], None]:
    """A hook that raises ``AgentCrash`` for the first batch holding a message keyed ``key``, and never again."""
    if not key:
        raise ValueError("the key to crash on must not be empty")
    target = key.encode()
    fired = False

    def hook(messages: Sequence) -> None:  # judge_engine.online.pipeline.Incoming, as the inline stage gets them
        nonlocal fired
        if fired or not any(m.key == target for m in messages):
            return
        fired = True
        offsets: dict[int, list[int]] = {}
        for m in messages:
            span = offsets.setdefault(int(m.partition), [m.offset, m.offset])
            span[0], span[1] = min(span[0], m.offset), max(span[1], m.offset)
        raise AgentCrash(f"{CRASH_MESSAGE} {key}: offsets {json.dumps(offsets, sort_keys=True)}")

    return hook
