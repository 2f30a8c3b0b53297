"""The encoder's text batches: cut by padding (a short text never pays for a long one), the same embeddings as one
text at a time, joint (question, answer) texts read as sequence pairs beside single texts."""

import numpy as np
import pytest

from judge_engine.model.student import PADDING_BUDGET, Encoder, joint


@pytest.fixture(scope="module")
def encoder():
    return Encoder(max_length=64, batch_size=8)


TEXTS = ["ok", "a short answer", "word " * 40, "yes", "another, somewhat longer answer to the question",
         "word " * 12, joint("What is 2+2?", "4"), joint("Name a colour", "blue, or perhaps green " * 5)]


def test_batches_keep_padding_within_the_budget_and_cover_every_text_once(encoder):
    seen = []
    for idx, batch in encoder._batches(TEXTS):
        mask = batch["attention_mask"]
        real, padded = int(mask.sum()), mask.numel()
        assert len(idx) == 1 or padded <= (1 + PADDING_BUDGET) * real + 1e-9
        seen += idx
    assert sorted(seen) == list(range(len(TEXTS)))


def test_embeddings_equal_those_of_one_text_at_a_time(encoder):
    together = encoder.encode(TEXTS)
    alone = np.stack([encoder.encode([t])[0] for t in TEXTS])
    assert np.abs(together - alone).max() < 1e-5


def test_a_joint_text_is_the_sequence_pair_of_question_and_answer(encoder):
    ids = encoder._tokenised([joint("What is 2+2?", "4")])[0]["input_ids"]
    direct = encoder.tokenizer("What is 2+2?", "4")["input_ids"]
    assert ids == direct and ids.count(encoder.tokenizer.sep_token_id) == 2
