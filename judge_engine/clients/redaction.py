"""Redaction of personal data from a trace before it leaves for the frontier judge (optional, off by default).

Contract:
- ``PATTERNS`` are the built-in redactions, by name (``schemas.settings.REDACT_PATTERNS`` lists the names for
  validation, in the order they apply): ``email``, ``credit_card`` (13-19 digits, spaces or dashes allowed between
  them, Luhn-valid only), ``ipv6``, ``ipv4``, ``phone`` (7-15 digits written as a phone number: ``+country`` then
  groups, ``(area) nnn-nnnn``, or ``nnn-nnn-nnnn`` with spaces, dots or dashes; not dates such as 2024-01-15).
  Each match becomes ``[REDACTED <NAME>]``. They err on the side of redacting: a number shaped like a phone number
  is redacted even if it is not one.
- ``redactor(frontier_settings)`` is the function (text -> text) that ``frontier.redact`` (comma-separated
  pattern names, applied in the order of ``PATTERNS``) and ``frontier.redact_hook`` (``"module:function"``, a
  function taking and returning a ``str``, applied after the patterns) describe, or None when neither is set.
  The hook is imported here, at start-up: a path that does not import is a ``ValueError`` naming the setting.
- ``redact_trace(trace, fn)`` is the trace with every text the frontier prompt shows (question, answer(s),
  reference, context) passed through ``fn``; ids, criterion and metadata are not shown to the frontier and stay
  as they are. The trace itself is not changed (a copy is returned), so the inline verdict, the stored rows and
  the topics keep the original text: only what is sent to the frontier is redacted.
- A hook that raises or returns something other than a string raises ``RedactionError``: the caller must then
  send nothing (fail closed), never the unredacted text.
- The one place this is applied is ``judge_engine.clients.frontier_client.FrontierJudge.judge``, right before the prompt is
  rendered.
"""

from __future__ import annotations

import importlib
import ipaddress
import re
from typing import Callable

from schemas.settings import FrontierSettings

TEXT_FIELDS = ("question", "answer", "answer_a", "answer_b", "reference", "context")

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![0-9A-Fa-f:])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d)")
_PHONE = re.compile(  # +country ...; (area) nnn-nnnn; nnn-nnn-nnnn (not dates such as 2024-01-15)
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{1,4}){1,5}"
    r"|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}|\d{3}[ .-]\d{3,4}[ .-]\d{4})(?!\w)")


class RedactionError(RuntimeError):
    """The redaction hook failed; the trace must not be sent."""


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _sub(pattern: re.Pattern, name: str, keep: Callable[[str], bool] = lambda _: True) -> Callable[[str], str]:
    mask = f"[REDACTED {name.upper()}]"

    def apply(text: str) -> str:
        return pattern.sub(lambda m: mask if keep(m.group(0)) else m.group(0), text)

    return apply


def _is_card(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _is_ipv6(match: str) -> bool:
    if not re.search(r"[0-9A-Fa-f]", match):
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


def _is_phone(match: str) -> bool:
    return 7 <= sum(ch.isdigit() for ch in match) <= 15


PATTERNS: dict[str, Callable[[str], str]] = {  # keys and order: schemas.settings.REDACT_PATTERNS
    "email": _sub(_EMAIL, "email"),
    "credit_card": _sub(_CARD, "credit_card", _is_card),
    "ipv6": _sub(_IPV6, "ipv6", _is_ipv6),
    "ipv4": _sub(_IPV4, "ipv4"),
    "phone": _sub(_PHONE, "phone", _is_phone),
}


def load_hook(path: str) -> Callable[[str], str]:
    module_name, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"frontier.redact_hook {path!r} cannot be loaded ({e}); set JUDGELINE_FRONTIER__REDACT_HOOK "
                         "to module:function of an importable module") from None
    if not callable(fn):
        raise ValueError(f"frontier.redact_hook {path!r} is not a function")
    return fn


def redactor(settings: FrontierSettings) -> Callable[[str], str] | None:
    steps = [PATTERNS[name] for name in settings.redact.split(",") if name]  # validated and ordered by settings
    if settings.redact_hook:
        hook = load_hook(settings.redact_hook)

        def run_hook(text: str) -> str:
            try:
                out = hook(text)
            except Exception as e:  # noqa: BLE001 - any failure of user code: send nothing
                raise RedactionError(f"the redaction hook {settings.redact_hook} failed: {type(e).__name__}") from e
            if not isinstance(out, str):
                raise RedactionError(f"the redaction hook {settings.redact_hook} returned {type(out).__name__}, "
                                     "not a string")
            return out

        steps.append(run_hook)
    if not steps:
        return None

    def redact(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return redact


def redact_trace(trace, fn: Callable[[str], str] | None):
    """A copy of ``trace`` with the texts the frontier sees passed through ``fn`` (the trace itself when None)."""
    if fn is None:
        return trace
    return trace.model_copy(update={f: fn(v) for f in TEXT_FIELDS if isinstance(v := getattr(trace, f), str)})
