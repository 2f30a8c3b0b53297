"""The frontier replay's fault injection, declared once: the ``Faults`` fields are also its command-line options.

Contract:
- ``Faults`` (frozen): fixed and jittered latency, the fractions of requests answered 429 (with Retry-After) and
  500, the Retry-After of an injected 429, and the jitter's seed. Fractions must lie in [0, 1] and durations be
  >= 0, else ``ValueError`` naming the field.
- Each field's ``metadata["help"]`` is its option's help: ``judgeline frontier-replay`` gets one option per field
  (``--latency-ms`` for ``latency_ms``), and ``to_args()`` renders a ``Faults`` as those options, which is how the
  server is started as a process (``doubles.frontier_replay.start``). Nothing else declares them.
- Imports only the standard library, so the CLI can read the fields without loading the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


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
