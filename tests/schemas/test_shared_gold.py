"""The shared gold sets parse completely with the schema (read from ../shared, never copied)."""

import collections

import pytest
from tests_support import SHARED_GOLD

from schemas.gold import GoldLabel, read_gold_file

FILES = {"pandalm-test.jsonl": 999, "llmbar-processed.jsonl": 466, "halueval-general.jsonl": 4507}


@pytest.mark.skipif(not SHARED_GOLD.exists(), reason="../shared/data/gold is not beside the checkout")
@pytest.mark.parametrize("name, count", FILES.items())
def test_every_shared_item_parses(name, count):
    kinds = collections.Counter()
    for number, item in read_gold_file(SHARED_GOLD / name):
        assert isinstance(item, GoldLabel), f"{name} line {number}: {item}"
        kinds[item.kind] += 1
    assert sum(kinds.values()) == count
