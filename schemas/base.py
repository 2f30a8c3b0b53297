"""Shared building blocks of every message schema: the label vocabulary, size limits and error reporting.

Contract:
- Labels use one vocabulary everywhere (``../shared/docs/gold-format.md``): pairwise ``A``/``B``/``tie``,
  pointwise ``pass``/``fail``. A verdict, a teacher label and a human label are directly comparable.
- Every text field is bounded (``MAX_TEXT_CHARS``), metadata is bounded in size and depth, and a raw message is
  bounded in bytes (``MAX_MESSAGE_BYTES``) before it is parsed at all.
- A message that breaks a rule raises :class:`InvalidMessage`, whose ``reason`` names each offending field and
  what to do about it; it is what lands in a dead letter.
- Messages are strict: unknown fields are rejected (a typo must not silently drop data), and so is a key given
  twice in one JSON object (parsers disagree on which one wins, a way to smuggle a value past a check).
- Messages are versioned: every ``Message`` has ``schema_version`` and goes through ``schemas.versioning.admit``
  before its fields are validated (the one rule: same major and a minor <= ours strict; a newer minor's unknown
  fields kept under ``metadata["_unknown"]``; another major or an unparseable version rejected, the reason naming
  ``schema_version``). The bytes written always carry this release's ``SCHEMA_VERSION``.
- ``parse_json_bytes`` raises nothing but :class:`InvalidMessage`, whatever the bytes (numbers too long to convert,
  nesting too deep for the parser, lone surrogates included).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas import versioning

MAX_MESSAGE_BYTES = 256 * 1024
MAX_TEXT_CHARS = 32_000
MAX_ID_CHARS = 128
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 6

Kind = Literal["pointwise", "pairwise"]
PairwiseLabel = Literal["A", "B", "tie"]
PointwiseLabel = Literal["pass", "fail"]
Label = Literal["A", "B", "tie", "pass", "fail"]
LABELS_BY_KIND: dict[str, tuple[str, ...]] = {"pairwise": ("A", "B", "tie"), "pointwise": ("pass", "fail")}
SWAPPED_LABEL = {"A": "B", "B": "A", "tie": "tie", "pass": "pass", "fail": "fail"}

Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
IDENTIFIER_PATTERN = r"^[^\s\x00-\x1f]+$"
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=IDENTIFIER_PATTERN)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]


def _depth(value: Any, level: int = 0) -> int:
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def _bounded_metadata(value: dict[str, Any]) -> dict[str, Any]:
    depth = _depth(value)
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"nested {depth} levels deep; at most {MAX_METADATA_DEPTH} are allowed, flatten it")
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode())
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes as JSON; at most {MAX_METADATA_BYTES} are allowed, send less metadata")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_bounded_metadata)]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """Naive timestamps are taken as UTC; aware ones are converted to UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def check_label(kind: str, label: str | None, field: str) -> None:
    """Raise ValueError naming ``field`` when ``label`` is not in the vocabulary of ``kind`` (None passes)."""
    if label is not None and label not in LABELS_BY_KIND[kind]:
        allowed = "/".join(LABELS_BY_KIND[kind])
        raise ValueError(f"{field}={label!r} is not a {kind} label; use one of {allowed}")


SCHEMA_VERSION_ERROR = "schema_version"  # the pydantic error type of a version the worker cannot accept
WIRE = "judgeline_wire"  # validation context key: the data was received (``parse_json_bytes``), not built here


class Message(BaseModel):
    """Base of every message: strict, immutable, JSON-serialisable, versioned (``schemas.versioning``).

    ``schema_version`` is the version the message arrived in (this release's for one built here); the bytes written
    always carry this release's. ``unknown_fields_into`` names the free-form field where the unknown fields of a
    newer minor version are kept (under ``metadata["_unknown"]``); None: they are dropped."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
    )
    unknown_fields_into: ClassVar[str | None] = None

    schema_version: str = Field(default_factory=versioning.current, pattern=versioning.PATTERN,
                                description="MAJOR.MINOR of the judgeline schema the message was written in; "
                                            "absent means 1.0")

    @model_validator(mode="before")
    @classmethod
    def _admit_version(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        # a message received without a version is 1.0; one built here without one is of this release
        absent = versioning.ABSENT_MEANS if (info.context or {}).get(WIRE) else versioning.current()
        try:
            # __pydantic_fields__: the same mapping as model_fields, without the class property's cost per message
            return versioning.admit(data, cls.__pydantic_fields__, cls.unknown_fields_into, absent)
        except versioning.VersionError as e:
            raise PydanticCustomError(SCHEMA_VERSION_ERROR, "{reason}", {"reason": str(e), "field": e.field}) \
                from None

    @field_serializer("schema_version")
    def _written_in(self, _version: str) -> str:
        return versioning.current()

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


DEFAULT_CRITERION = "overall"


class JudgedItem(Message):
    """What a judge looks at, shared by traces and gold items: a question and answers that match the kind."""

    kind: Kind
    criterion: Name = DEFAULT_CRITERION
    question: Text = Field(min_length=1)
    answer: Text | None = None
    answer_a: Text | None = None
    answer_b: Text | None = None
    reference: Text | None = None

    @model_validator(mode="after")
    def _answers_match_kind(self) -> "JudgedItem":
        if self.kind == "pointwise":
            if self.answer is None:
                raise ValueError("pointwise items need `answer` (the answer to judge)")
            if self.answer_a is not None or self.answer_b is not None:
                raise ValueError("pointwise items take `answer`, not answer_a/answer_b; set kind=pairwise instead")
        else:
            missing = [f for f in ("answer_a", "answer_b") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"pairwise items need answer_a and answer_b; missing {', '.join(missing)}")
            if self.answer is not None:
                raise ValueError("pairwise items take answer_a and answer_b, not `answer`; set kind=pointwise")
        return self


class InvalidMessage(ValueError):
    """A message that cannot be accepted. ``reason`` is one line per offending field, naming field and fix."""

    def __init__(self, model: str, reason: str):
        super().__init__(f"invalid {model}: {reason}")
        self.model = model
        self.reason = reason


M = TypeVar("M", bound=Message)


def describe_validation_error(err: ValidationError) -> str:
    """Pydantic's errors as '; '-joined 'field.path: message' items (the field first, always)."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(message)"
        msg = e["msg"]
        if e["type"] == SCHEMA_VERSION_ERROR:
            loc = ".".join([*(str(p) for p in e["loc"]), e["ctx"]["field"]])
        elif e["type"] == "missing":
            msg = "required field is missing; add it"
        elif e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or put it under metadata"
        elif e["type"] == "string_too_long":
            msg = f"{msg}; shorten it"
        elif e["type"] == "string_pattern_mismatch" and (e.get("ctx") or {}).get("pattern") == IDENTIFIER_PATTERN:
            msg = "an id must not contain whitespace or control characters (NUL, newline, tab...); remove them"
        elif e["type"] == "string_unicode":
            msg = "not a valid Unicode string (a lone surrogate such as \\ud800); send real characters"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a key given twice (parsers disagree on which one wins: smuggling)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        raise _DuplicateKey(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return out


def parse_json_bytes(model: type[M], raw: bytes | str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> M:
    """Parse one JSON message, raising :class:`InvalidMessage` for every way it can be wrong."""
    name = model.__name__
    if isinstance(raw, str):
        raw = raw.encode()
    if len(raw) > max_bytes:
        raise InvalidMessage(name, f"(message): {len(raw)} bytes, over the limit of {max_bytes}; send less")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidMessage(name, f"(message): not valid UTF-8 at byte {e.start}; encode the message as UTF-8")
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise InvalidMessage(name, f"(message): not JSON ({e.msg} at line {e.lineno} column {e.colno})")
    except _DuplicateKey as e:
        key = e.args[0] if len(e.args[0]) <= 100 else e.args[0][:97] + "..."
        raise InvalidMessage(name, f"{key}: the key appears more than once in one object; send it once")
    except RecursionError:
        raise InvalidMessage(name, "(message): JSON nested too deeply")
    except ValueError as e:  # e.g. an integer of more than 4300 digits (Python's int conversion limit)
        raise InvalidMessage(name, f"(message): not usable JSON ({e}); send smaller numbers, or numbers as strings")
    if not isinstance(data, dict):
        raise InvalidMessage(name, f"(message): expected a JSON object, got {type(data).__name__}")
    return validate(model, data, received=True)


def validate(model: type[M], data: dict[str, Any], *, received: bool = False) -> M:
    """``data`` as ``model`` or :class:`InvalidMessage`; ``received``: it came from outside (a message without a
    ``schema_version`` is then 1.0, see ``schemas.versioning``), else it was built here (this release's version)."""
    try:
        return model.model_validate(data, context={WIRE: True} if received else None)
    except ValidationError as e:
        raise InvalidMessage(model.__name__, describe_validation_error(e)) from None
    except RecursionError:
        raise InvalidMessage(model.__name__, "(message): nested too deeply") from None
