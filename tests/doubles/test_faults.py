"""The agent-crash fault hook (``doubles.faults.crash_on_key``): raises on the batch holding the key, once, naming
its offsets per partition."""

from __future__ import annotations

import json
import re

import pytest

from doubles.faults import CRASH_MESSAGE, AgentCrash, crash_on_key
from judge_engine.online.pipeline import Incoming


def _events(*messages: tuple[int, int, bytes | None]):
    return [Incoming(value=b"{}", key=k, topic="t", partition=p, offset=o) for p, o, k in messages]


def test_crashes_on_the_batch_holding_the_key_once_naming_its_offsets_per_partition():
    hook = crash_on_key("boom")
    hook(_events((0, 0, b"a"), (1, 0, None)))  # a batch without the key passes
    with pytest.raises(AgentCrash) as crash:
        hook(_events((0, 5, b"x"), (2, 9, b"boom"), (0, 3, b"y"), (0, 4, None)))
    message = str(crash.value)
    assert message.startswith(f"{CRASH_MESSAGE} boom: offsets ")
    assert json.loads(re.search(r"offsets (\{.*\})", message).group(1)) == {"0": [3, 5], "2": [9, 9]}
    hook(_events((2, 9, b"boom")))  # and never again


def test_the_key_must_not_be_empty():
    with pytest.raises(ValueError, match="must not be empty"):
        crash_on_key("")
