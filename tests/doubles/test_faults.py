"""The agent-crash fault hook (``doubles.faults.crash_on_batch``): raises on the n-th batch only, naming its offsets."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from doubles.faults import CRASH_MESSAGE, AgentCrash, crash_on_batch


def _events(*spans: tuple[int, int]):
    return [SimpleNamespace(message=SimpleNamespace(partition=p, offset=o)) for p, o in spans]


def test_crashes_on_the_nth_batch_only_naming_its_offsets_per_partition():
    hook = crash_on_batch(2)
    hook(_events((0, 0), (1, 0)))  # the first batch passes
    with pytest.raises(AgentCrash) as crash:
        hook(_events((0, 5), (2, 9), (0, 3), (0, 4)))
    message = str(crash.value)
    assert message.startswith(f"{CRASH_MESSAGE} 2: offsets ")
    assert json.loads(re.search(r"offsets (\{.*\})", message).group(1)) == {"0": [3, 5], "2": [9, 9]}
    hook(_events((0, 6)))  # and never again: a restarted agent goes on


def test_the_batch_counts_from_one():
    with pytest.raises(ValueError, match="counts from 1"):
        crash_on_batch(0)
