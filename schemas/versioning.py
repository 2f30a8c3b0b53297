"""Schema versions of judgeline's messages and the one rule of what a worker accepts (docs/reliability.md).

Contract:
- ``SCHEMA_VERSION`` (``MAJOR.MINOR``) is the schema this release writes. Every message model (``schemas.base.Message``)
  has a ``schema_version`` field; the bytes a release writes always carry its own ``SCHEMA_VERSION``, nested messages
  included, whatever version the message arrived in: a message re-written by a worker is a message of that worker's
  schema. A received message (or a nested message) without ``schema_version`` is ``ABSENT_MEANS`` (``1.0``):
  producers older than the field keep working; one built in code without it is of this release
  (``schemas.base.validate(received=False)``, the default).
- ``admit(data, known, keep_into, absent)`` applies the rule to one JSON object about to be validated as a message
  whose fields are ``known`` (``absent``: the version of an object without one):
  - an unparseable version (not a string, not ``MAJOR.MINOR`` of non-negative integers of at most 4 digits) raises
    ``VersionError`` naming ``schema_version`` and the fix;
  - another major (greater: a newer release; smaller: a retired one) raises ``VersionError`` naming
    ``schema_version`` and the fix (upgrade the worker / re-produce the message in this major);
  - the same major and a minor <= ours: nothing changes, the model validates strictly (an unknown field is still an
    error: a typo must not silently drop data);
  - the same major and a minor > ours (a newer release wrote it during a rolling upgrade): the fields this release
    does not know are taken out of the object. Where the model keeps free-form data (``keep_into``: a trace's
    ``metadata``) they are kept there under ``UNKNOWN_KEY`` (``metadata["_unknown"]``: field name -> value, merged
    with any already there), so they are stored and carried on with the message; a model without such a field drops
    them (the message is still whole on its source topic). Unknown fields kept this way count toward metadata's
    limits. A minor release may only add optional fields; a field whose values changed meaning is a new major.
  - ``keep_into[UNKNOWN_KEY]`` entries that name a field the model knows and that the object does not set are moved
    back into that field (a newer worker reading what an older one kept restores it), whatever the version.
- ``parse_version(value)`` is the (major, minor) of a version, ``is_newer(version)`` whether a message's version is
  of a newer minor than ours (the stages count those: ``rolled_forward``).
- No import of the rest of the project: ``schemas.base`` builds on it.
"""

from __future__ import annotations

import re
from typing import Any, Collection

SCHEMA_VERSION = "1.0"
ABSENT_MEANS = "1.0"
UNKNOWN_KEY = "_unknown"
FIELD = "schema_version"
DOCS = "docs/reliability.md#schema-versions"

PATTERN = r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$"
_VERSION = re.compile(PATTERN)


class VersionError(ValueError):
    """A message's ``schema_version`` this release cannot accept; the text says the fix, ``field`` names the field
    (``schema_version``, or the metadata key a newer minor's fields cannot be kept in)."""

    def __init__(self, text: str, field: str = FIELD):
        super().__init__(text)
        self.field = field


def current() -> str:
    """This release's schema version (read at call time, so a test that simulates a newer release can bump it)."""
    return SCHEMA_VERSION


def parse_version(value: Any) -> tuple[int, int]:
    if not isinstance(value, str):
        raise VersionError(f"must be a string such as \"{current()}\", got {type(value).__name__} {_show(value)}; "
                           f"send the schema version as text, or leave it out for {ABSENT_MEANS}")
    match = _VERSION.match(value)
    if match is None:
        raise VersionError(f"{_show(value)} is not a MAJOR.MINOR version such as \"{current()}\"; send the version "
                           f"of the judgeline schema the message was written in, or leave it out for {ABSENT_MEANS}")
    return int(match[1]), int(match[2])


def is_newer(version: str | None) -> bool:
    """Whether ``version`` (as received) is of our major and a newer minor: ``check``'s answer, False where
    ``check`` refuses."""
    try:
        return check(version if version is not None else ABSENT_MEANS)
    except VersionError:
        return False


def check(version: Any) -> bool:
    """Raise ``VersionError`` for a version this release cannot read; True when it is a newer minor (lenient)."""
    if version == current():  # the common case, without parsing
        return False
    major, minor = parse_version(version)
    our_major, our_minor = parse_version(current())
    if major > our_major:
        raise VersionError(f"\"{version}\" is of schema major {major}, newer than this worker's {current()}; "
                           f"upgrade the worker to a release that reads major {major} before producing it ({DOCS})")
    if major < our_major:
        raise VersionError(f"\"{version}\" is of schema major {major}, which this worker ({current()}) no longer "
                           f"reads; re-produce the message in schema {our_major}.x ({DOCS})")
    return minor > our_minor


def admit(data: dict[str, Any], known: Collection[str], keep_into: str | None,
          absent: str = ABSENT_MEANS) -> dict[str, Any]:
    """``data`` as the model may validate it (see the module contract); ``absent`` is the version of data without
    one (``ABSENT_MEANS`` for a received message, ``current()`` for one built in this release). Raises
    ``VersionError``."""
    newer = check(data.get(FIELD, absent))
    out = _restore(data, known, keep_into)
    if not newer:
        return out
    unknown = {k: v for k, v in out.items() if k not in known}
    if not unknown:
        return out
    out = {k: v for k, v in out.items() if k in known}
    if keep_into is None or keep_into not in known:
        return out
    into = out.get(keep_into, {})
    if not isinstance(into, dict):
        return out  # the model reports the bad field itself
    kept = into.get(UNKNOWN_KEY, {})
    if not isinstance(kept, dict):
        raise VersionError(f"reserved for the fields of a newer schema version and must be an object, got "
                           f"{type(kept).__name__}; rename that {keep_into} key", f"{keep_into}.{UNKNOWN_KEY}")
    out[keep_into] = {**into, UNKNOWN_KEY: {**kept, **unknown}}
    return out


def _restore(data: dict[str, Any], known: Collection[str], keep_into: str | None) -> dict[str, Any]:
    """Fields an older worker kept under ``keep_into[UNKNOWN_KEY]`` that this model knows, moved back."""
    into = data.get(keep_into) if keep_into is not None else None
    kept = into.get(UNKNOWN_KEY) if isinstance(into, dict) else None
    if not isinstance(kept, dict):
        return data
    back = {k: v for k, v in kept.items() if k in known and k not in data and k != keep_into}
    if not back:
        return data
    rest = {k: v for k, v in kept.items() if k not in back}
    into = {k: v for k, v in into.items() if k != UNKNOWN_KEY} | ({UNKNOWN_KEY: rest} if rest else {})
    return {**data, **back, keep_into: into}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
