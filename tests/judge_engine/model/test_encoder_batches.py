"""The encoder's text batches: cut by padding (a short text never pays for a long one), the same embeddings as one
text at a time, joint (question, answer) texts read as sequence pairs beside single texts."""

import math

import numpy as np
import pytest

from judge_engine.model.student import JOINT, SERIAL_TEXTS, Encoder, joint


@pytest.fixture(scope="module")
def encoder():
    return Encoder(max_length=64, batch_size=8)


TEXTS = ["ok", "a short answer", "word " * 40, "yes", "another, somewhat longer answer to the question",
         "word " * 12, joint("What is 2+2?", "4"), joint("Name a colour", "blue, or perhaps green " * 5)]


def _cuts(encoder, texts):
    """(indices, real tokens, padded positions) of each batch the encoder cuts ``texts`` into."""
    return [(idx, int(b["attention_mask"].sum()), b["attention_mask"].numel()) for idx, b in encoder._batches(texts)]


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.25, 1.0])
def test_batches_keep_padding_within_the_budget_and_cover_every_text_once(encoder, budget, monkeypatch):
    monkeypatch.setattr(encoder, "padding_budget", budget)
    seen = []
    for idx, real, padded in _cuts(encoder, TEXTS + LONG):
        assert len(idx) == 1 or padded <= (1 + budget) * real + 1e-9
        seen += idx
    assert sorted(seen) == list(range(len(TEXTS + LONG)))


def test_a_larger_budget_cuts_fewer_batches_and_pads_more(encoder, monkeypatch):
    texts = TEXTS + LONG
    monkeypatch.setattr(encoder, "padding_budget", 0.0)
    tight = _cuts(encoder, texts)
    monkeypatch.setattr(encoder, "padding_budget", 10.0)
    loose = _cuts(encoder, texts)
    assert sum(real for _, real, _ in tight) == sum(real for _, real, _ in loose)  # the same tokens, cut otherwise
    assert all(real == padded for _, real, padded in tight)  # no budget: only texts of one length share a batch
    assert len(loose) == 2 and len(tight) > len(loose)  # batch_size 8 is the only cut left for 12 texts
    assert sum(padded for _, _, padded in loose) > sum(padded for _, _, padded in tight)


@pytest.mark.parametrize("budget", [-0.1, float("nan")])
def test_a_negative_or_missing_padding_budget_is_refused_by_name(budget):
    with pytest.raises(ValueError, match="padding_budget must be a share >= 0"):
        Encoder(max_length=64, padding_budget=budget)


def test_embeddings_equal_those_of_one_text_at_a_time(encoder):
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-5


def test_a_joint_text_is_the_sequence_pair_of_question_and_answer(encoder):
    ids = encoder._tokenised([joint("What is 2+2?", "4")])[0]["input_ids"]
    direct = encoder.tokenizer("What is 2+2?", "4")["input_ids"]
    assert ids == direct and ids.count(encoder.tokenizer.sep_token_id) == 2


LONG = ["word " * 100, joint("why " * 50, "because " * 50), joint("short?", "long " * 90), ""]


def _tokenizer_ids(encoder, texts):
    """What the transformers tokenizer itself gives for each text (a joint text as a sequence pair)."""
    out = []
    for t in texts:
        parts = t.split(JOINT, 1)
        e = encoder.tokenizer(*parts, truncation=True, max_length=encoder.max_length)
        out.append((e["input_ids"], e["token_type_ids"]))
    return out


class _CountingTokenizer:
    """The encoder's Rust tokenizer, counting its batch calls."""

    def __init__(self, fast):
        self.fast, self.batch_calls = fast, 0

    def encode(self, *args):
        return self.fast.encode(*args)

    def encode_batch(self, texts):
        self.batch_calls += 1
        return self.fast.encode_batch(texts)


@pytest.mark.parametrize("device", ["cpu", "gpu"])
@pytest.mark.parametrize("copies", [1, 4])
def test_tokenising_gives_the_tokenizers_own_ids_truncated_alike(encoder, copies, device, monkeypatch):
    """On the CPU every text is tokenised one by one; on a GPU (its rule set here: no GPU on these machines) more
    than SERIAL_TEXTS go to one parallel batch call. Either way: the tokenizer's own ids."""
    assert encoder.serial_texts == math.inf  # a CPU encoder
    if device == "gpu":
        monkeypatch.setattr(encoder, "serial_texts", SERIAL_TEXTS)
    counting = _CountingTokenizer(encoder._fast)
    monkeypatch.setattr(encoder, "_fast", counting)
    texts = (TEXTS[:4] + LONG) * copies  # 8 texts, or 32
    got = [(e["input_ids"], e["token_type_ids"]) for e in encoder._tokenised(texts)]
    assert got == _tokenizer_ids(encoder, texts)
    assert max(len(ids) for ids, _ in got) == encoder.max_length  # the long texts were cut
    assert counting.batch_calls == (1 if device == "gpu" and len(texts) > SERIAL_TEXTS else 0)


def test_padded_batch_equals_the_tokenizers_padding(encoder):
    rows = encoder._tokenised(TEXTS + LONG)
    ours = encoder._padded(rows)
    theirs = encoder.tokenizer.pad([dict(r) for r in rows], return_tensors="np")
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[name].dtype == np.int64 and np.array_equal(ours[name], theirs[name]), name
