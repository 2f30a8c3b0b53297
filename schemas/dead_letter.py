"""`DeadLetter`: a message judgeline could not accept, kept whole with the reason.

Contract:
- ``raw`` holds the exact bytes received (base64 in JSON), so nothing is lost and the message can be replayed
  once fixed; ``error`` names the offending field and the fix (from ``InvalidMessage.reason``).
- ``topic``/``partition``/``offset`` identify the source message; together they are the dead letter's identity,
  which makes storing it idempotent under redelivery.
- ``stage`` says where it failed (``parse`` for bad input, ``judge``/``frontier``/``store`` for permanent errors
  further on).
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import Field, ValidationInfo, field_serializer, field_validator

from schemas.base import MAX_MESSAGE_BYTES, Message, Name, UtcDatetime, utc_now

Stage = Literal["parse", "judge", "frontier", "store"]


class DeadLetter(Message):
    raw: bytes = Field(max_length=MAX_MESSAGE_BYTES * 4)
    error: str = Field(max_length=4096)
    stage: Stage = "parse"
    topic: Name
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: bytes | None = Field(None, max_length=4096)
    message_time: UtcDatetime
    received_at: UtcDatetime = Field(default_factory=utc_now)

    @field_validator("raw", "key", mode="before")
    @classmethod
    def _from_base64(cls, v: object, info: ValidationInfo) -> object:
        if isinstance(v, str):  # JSON carries bytes as standard base64
            try:
                return base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{info.field_name} must be standard base64 in JSON") from None
        return v

    @field_serializer("raw", "key", when_used="json")
    def _to_base64(self, v: bytes | None) -> str | None:
        return None if v is None else base64.b64encode(v).decode()

    @field_validator("error", mode="before")
    @classmethod
    def _clip_error(cls, v: object) -> object:
        return v[:4096] if isinstance(v, str) else v
