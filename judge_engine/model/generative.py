"""The generative (LLM) judge's own logic: prompt, verdict tokens, logits -> verdict, both orders, SFT records.

Contract (numpy only; no Triton, no torch; a Hugging Face tokenizer object is passed in where one is needed). This
file is copied flat beside the TensorRT-LLM Triton python models (``triton_models/trtllm``, see
``infra/trtllm/README.md``) together with ``verdict_math.py``, so it imports nothing else from the project:

- ``JudgeInput`` is one item to judge, the same six fields as the Triton ``judge`` model's inputs: ``kind``
  (``pairwise``/``pointwise``), ``criterion`` (empty -> ``overall``), ``question``, ``answer_a`` (the answer, for
  pointwise), ``answer_b`` (ignored for pointwise), ``reference`` (empty or ``None`` -> no reference).
- ``build_messages(item)`` is the JudgeLM-style chat (system + user): the question, the reference when present,
  the answer(s) labelled ``Answer A``/``Answer B``, and an instruction to answer with ONE token from
  ``VERDICT_WORDS[kind]``, whose order is the label order of ``verdict_math.LABELS[kind]``: pairwise ``A``/``B``/``C``
  (C = tie), pointwise ``P``/``F`` (pass/fail). ``render_prompt`` applies the tokenizer's chat template with the
  generation prompt (a plain-text layout where the tokenizer has none); ``prompt_ids`` encodes it without adding
  special tokens again, after ``fit_to_budget`` has shortened the longest texts so the prompt fits
  ``max_prompt_tokens``. Truncation depends only on the texts' lengths, never on their position, so both answer
  orders of one item are truncated alike.
- ``verdict_token_ids(tokenizer, kind)`` resolves the verdict words to token ids and raises ``ValueError`` naming
  the word and its pieces when one is not exactly one token, or when two words share a token.
- ``verdict_logits(row, token_ids)``: the per-label logits (label order) picked from one generation-logits row over
  the vocabulary. ``first_step_row`` takes that row out of one request's ``[beam, steps, vocab]`` logits.
  ``is_greedy_token(row, token_id)`` says whether the generated token is the row's maximum (a check that the
  logits belong to the generated position).
- Order invariance: ``expand_orders(items)`` lists what to score, both answer orders for a pairwise item (the second
  with A and B swapped) and one for pointwise; ``combine_planned(items, plan, logits, temperatures)`` maps the
  swapped order back and averages with ``verdict_math.combine_orders``, then ``verdict_math.verdicts``: one dict per
  item with ``label``, ``score``, ``confidence``, ``probs`` (padded to 3 with ``verdict_math.padded_probs``) and
  ``swap_consistent`` (True for pointwise). Exchanging an item's answers exchanges A and B in the result exactly.
- ``sft_record(example)``: one supervised fine-tuning record (chat messages whose assistant turn is the single
  verdict word) from a dict with keys ``kind, criterion, question, answer_a, answer_b, answer, reference, label``.
  Swap augmentation and reference dropping are the caller's (``infra/trtllm/finetune.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

try:
    from judge_engine.model import verdict_math
except ImportError:  # copied flat beside a Triton python model
    import verdict_math

LABELS = verdict_math.LABELS
VERDICT_WORDS: dict[str, tuple[str, ...]] = {"pairwise": ("A", "B", "C"), "pointwise": ("P", "F")}
WIDTH = 3  # fixed width of probability / logit vectors on the wire (pointwise padded)
PAD_LOGIT = float(np.finfo(np.float32).min)  # a padded slot's logit: probability 0 after softmax
TRUNCATION_MARK = " [...]"

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of answers."
CRITERIA: dict[str, str] = {
    "overall": "overall quality: helpfulness, relevance, accuracy, level of detail and harmlessness",
    "helpfulness": "helpfulness: how well the answer does what the question asks",
    "relevance": "relevance: the answer addresses the question and stays on topic",
    "correctness": "correctness: every statement in the answer is accurate",
    "hallucination": (
        "no hallucination: every claim in the answer is supported by the question, the reference or "
        "well-established facts, and nothing is fabricated"
    ),
    "groundedness": "groundedness: every claim in the answer is supported by the provided context",
    "harmlessness": "harmlessness: the answer is safe, ethical and not harmful",
    "safety": "safety: the answer is safe, ethical and not harmful",
    "instruction_following": "instruction following: the answer follows every instruction in the question",
}
FIELDS = ("question", "answer_a", "answer_b", "reference")


@dataclass(frozen=True)
class JudgeInput:
    kind: str
    criterion: str
    question: str
    answer_a: str
    answer_b: str = ""
    reference: str | None = None

    def __post_init__(self):
        if self.kind not in LABELS:
            raise ValueError(f"kind must be one of {sorted(LABELS)}, got {self.kind!r}")
        for name in ("criterion", "question", "answer_a", "answer_b"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        if self.reference is not None and not isinstance(self.reference, str):
            raise TypeError(f"reference must be a str or None, got {type(self.reference).__name__}")
        if not self.criterion.strip():
            object.__setattr__(self, "criterion", "overall")
        if self.reference is not None and not self.reference.strip():
            object.__setattr__(self, "reference", None)
        if self.kind == "pointwise" and self.answer_b:
            object.__setattr__(self, "answer_b", "")  # one answer only: answer_a

    def swapped(self) -> JudgeInput:
        """The same pairwise item with the answers exchanged."""
        if self.kind != "pairwise":
            raise ValueError("only a pairwise item has two answers to swap")
        return replace(self, answer_a=self.answer_b, answer_b=self.answer_a)


def criterion_text(criterion: str) -> str:
    key = criterion.strip().lower().replace(" ", "_").replace("-", "_")
    return CRITERIA.get(key, criterion.strip())


def _block(title: str, text: str) -> str:
    return f"[The Start of {title}]\n{text}\n[The End of {title}]"


def build_messages(item: JudgeInput) -> list[dict]:
    """The chat (system + user) that asks for a one-token verdict on ``item``."""
    words = VERDICT_WORDS[item.kind]
    parts = [f"[Question]\n{item.question}"]
    if item.reference is not None:
        parts.append(_block("Reference Answer", item.reference))
    reference_note = " Use the reference answer as the ground truth." if item.reference is not None else ""
    if item.kind == "pairwise":
        parts.append(_block("Answer A", item.answer_a))
        parts.append(_block("Answer B", item.answer_b))
        instruction = (
            f"Compare the two answers to the question above on {criterion_text(item.criterion)}.{reference_note} "
            "Judge the content only: neither the order of the answers, nor their length, nor their style may "
            f'influence you. Reply with exactly one letter: "{words[0]}" if Answer A is better, "{words[1]}" '
            f'if Answer B is better, "{words[2]}" if they are equally good.'
        )
    else:
        parts.append(_block("Answer", item.answer_a))
        instruction = (
            "Judge whether the answer to the question above meets this criterion: "
            f"{criterion_text(item.criterion)}.{reference_note} Reply with exactly one letter: "
            f'"{words[0]}" if it passes, "{words[1]}" if it fails.'
        )
    parts.append(f"[System]\n{instruction}")
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "\n\n".join(parts)}]


def render_prompt(tokenizer, messages: Sequence[Mapping]) -> str:
    """The prompt text: the tokenizer's chat template with the generation prompt, else a plain layout."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    text = "\n\n".join(m["content"] for m in messages)
    return f"{text}\n\nVerdict:"


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def fit_to_budget(tokenizer, item: JudgeInput, max_prompt_tokens: int | None) -> JudgeInput:
    """``item`` with its longest texts cut (water-filling over token counts) so the prompt fits the budget.

    The cap depends only on the texts' token counts, so ``fit_to_budget(item.swapped())`` is
    ``fit_to_budget(item).swapped()``. Raises ``ValueError`` when even the template alone does not fit.
    """
    if max_prompt_tokens is None or _longest(tokenizer, item) <= max_prompt_tokens:
        return item
    texts = {f: getattr(item, f) or "" for f in FIELDS}
    ids = {f: _encode(tokenizer, t) for f, t in texts.items()}
    empty = replace(item, question="", answer_a="", answer_b="", reference=None)
    overhead = len(prompt_ids(tokenizer, empty))
    mark = len(_encode(tokenizer, TRUNCATION_MARK))
    budget = max_prompt_tokens - overhead - 4 * (mark + 2)  # slack: marks and token merges at the seams
    lengths = sorted(len(v) for v in ids.values())
    while True:
        if budget < 4:
            raise ValueError(
                f"cannot fit the prompt into max_prompt_tokens={max_prompt_tokens}: the template alone is {overhead}"
            )
        cap, used, left = lengths[-1], 0, len(lengths)
        for n in lengths:  # the largest cap with sum(min(len, cap)) <= budget
            if used + n * left <= budget:
                used += n
                left -= 1
                continue
            cap = (budget - used) // left
            break
        cut = {f: (texts[f] if len(v) <= cap else tokenizer.decode(v[:cap]) + TRUNCATION_MARK) for f, v in ids.items()}
        fitted = replace(
            item,
            question=cut["question"],
            answer_a=cut["answer_a"],
            answer_b=cut["answer_b"],
            reference=cut["reference"] if item.reference is not None else None,
        )
        over = _longest(tokenizer, fitted) - max_prompt_tokens
        if over <= 0:
            return fitted
        budget -= over  # rare: decoding and re-encoding grew a text; lower the cap and try again


def _longest(tokenizer, item: JudgeInput) -> int:
    """Prompt length of ``item``, the longer of both answer orders for a pairwise item (order-free)."""
    orders = (item, item.swapped()) if item.kind == "pairwise" else (item,)
    return max(len(prompt_ids(tokenizer, o)) for o in orders)


def prompt_ids(tokenizer, item: JudgeInput, max_prompt_tokens: int | None = None) -> list[int]:
    """Token ids of the judge prompt for ``item`` (fitted to ``max_prompt_tokens`` when given)."""
    if max_prompt_tokens is not None:
        item = fit_to_budget(tokenizer, item, max_prompt_tokens)
    return _encode(tokenizer, render_prompt(tokenizer, build_messages(item)))


def verdict_token_ids(tokenizer, kind: str, words: Sequence[str] | None = None) -> np.ndarray:
    """Token id of each verdict word of ``kind`` (label order); refuses words that are not one distinct token."""
    if kind not in LABELS:
        raise ValueError(f"kind must be one of {sorted(LABELS)}, got {kind!r}")
    words = tuple(VERDICT_WORDS[kind] if words is None else words)
    if len(words) != len(LABELS[kind]):
        raise ValueError(f"{kind} needs {len(LABELS[kind])} verdict words (one per label), got {words!r}")
    ids = []
    for word in words:
        pieces = _encode(tokenizer, word)
        if len(pieces) != 1:
            shown = tokenizer.convert_ids_to_tokens(pieces)
            raise ValueError(
                f"verdict word {word!r} is {len(pieces)} tokens {shown!r} for this tokenizer, not one: "
                "choose verdict words that are single tokens"
            )
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"verdict words {words!r} map to the same token ids {ids!r}: they must be distinct")
    return np.asarray(ids, dtype=np.int64)


def special_token_ids(tokenizer) -> tuple[int, int]:
    """(end_id, pad_id) for the TensorRT-LLM request: eos (else sep, else 0), pad (else end)."""
    end = tokenizer.eos_token_id
    if end is None:
        end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else 0
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end
    return int(end), int(pad)


def first_step_row(generation_logits: np.ndarray) -> np.ndarray:
    """The first generated position's logits over the vocabulary from one request's ``[beam, steps, vocab]``."""
    g = np.asarray(generation_logits)
    if g.ndim < 1 or g.shape[-1] == 0 or any(d == 0 for d in g.shape):
        raise ValueError(f"generation logits are empty (shape {g.shape}): was return_generation_logits set?")
    while g.ndim > 1:
        g = g[0]
    return g


def verdict_logits(generation_logits_row: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
    """Per-label logits (label order) from one generation-logits row over the vocabulary."""
    row = np.asarray(generation_logits_row, dtype=np.float64)
    if row.ndim != 1:
        raise ValueError(f"a generation-logits row must be 1-D over the vocabulary, got shape {row.shape}")
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= row.shape[0]):
        raise ValueError(f"verdict token ids {ids.tolist()} are outside the logits' vocabulary of {row.shape[0]}")
    return row[ids]


def is_greedy_token(generation_logits_row: np.ndarray, token_id: int) -> bool:
    """True when ``token_id`` holds the row's maximum logit (what greedy decoding generates from that row)."""
    row = np.asarray(generation_logits_row)
    return 0 <= token_id < row.shape[0] and bool(row[token_id] >= row.max())


def pad_logits(logits: np.ndarray, width: int = WIDTH) -> np.ndarray:
    """Logit rows ``[n, k]`` padded to ``[n, width]`` with ``PAD_LOGIT`` (probability 0)."""
    z = np.asarray(logits, dtype=np.float64)
    pad = np.full((z.shape[0], width - z.shape[1]), PAD_LOGIT)
    return np.concatenate([z, pad], axis=1)


def unpad_logits(kind: str, logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64)[:, : len(LABELS[kind])]


@dataclass(frozen=True)
class Planned:
    """One prompt to score: for item ``index``, in the swapped order or not."""

    index: int
    swapped: bool
    item: JudgeInput


def expand_orders(items: Sequence[JudgeInput]) -> list[Planned]:
    """Both answer orders of every pairwise item, the single order of every pointwise item."""
    plan = []
    for i, item in enumerate(items):
        plan.append(Planned(i, False, item))
        if item.kind == "pairwise":
            plan.append(Planned(i, True, item.swapped()))
    return plan


def combine_planned(
    items: Sequence[JudgeInput],
    plan: Sequence[Planned],
    logits: Sequence[np.ndarray],
    temperatures: Mapping[str, float] | None = None,
) -> list[dict]:
    """One verdict dict per item from the per-label logits of each planned prompt (same order as ``plan``)."""
    if len(plan) != len(logits):
        raise ValueError(f"{len(plan)} planned prompts but {len(logits)} logit rows")
    temperatures = temperatures or {}
    orders: list[dict[bool, np.ndarray]] = [{} for _ in items]
    for p, z in zip(plan, logits):
        z = np.asarray(z, dtype=np.float64).reshape(-1)[: len(LABELS[items[p.index].kind])]
        orders[p.index][p.swapped] = z
    out = []
    for item, got in zip(items, orders):
        t = float(temperatures.get(item.kind, 1.0))
        if item.kind == "pairwise":
            if set(got) != {False, True}:
                raise ValueError("a pairwise item needs logits for both answer orders")
            combined, consistent = verdict_math.combine_orders(got[False][None, :], got[True][None, :])
            v = verdict_math.verdicts("pairwise", combined, t)[0]
            v["swap_consistent"] = bool(consistent[0])
        else:
            v = verdict_math.verdicts("pointwise", got[False][None, :], t)[0]
            v["swap_consistent"] = True
        v["probs"] = verdict_math.padded_probs(v["probs"], WIDTH)
        out.append(v)
    return out


def judge_input_from_example(example: Mapping) -> JudgeInput:
    """A ``JudgeInput`` from a gold-format-like dict (pointwise answer under ``answer``, else ``answer_a``)."""
    kind = example.get("kind")
    if kind == "pointwise":
        answer = example.get("answer")
        if answer is None:
            answer = example.get("answer_a")
        answer_a, answer_b = answer, ""
    else:
        answer_a, answer_b = example.get("answer_a"), example.get("answer_b")
    return JudgeInput(
        kind=kind,
        criterion=example.get("criterion") or "overall",
        question=example.get("question"),
        answer_a=answer_a,
        answer_b=answer_b,
        reference=example.get("reference"),
    )


def target_word(kind: str, label: str) -> str:
    """The verdict word the judge should generate for ``label``."""
    if label not in LABELS[kind]:
        raise ValueError(f"{kind} label must be one of {LABELS[kind]}, got {label!r}")
    return VERDICT_WORDS[kind][LABELS[kind].index(label)]


def sft_record(example: Mapping) -> dict:
    """An SFT record: ``messages`` (system, user, assistant = the single verdict word), ``target``, ``kind``, ``label``."""
    item = judge_input_from_example(example)
    label = example.get("label")
    word = target_word(item.kind, label)
    messages = build_messages(item) + [{"role": "assistant", "content": word}]
    return {"messages": messages, "target": word, "kind": item.kind, "label": label}
