"""The project's own small gold-format sample: synthetic, deterministic, for the demo without ../shared and tests.

Contract:
- ``write_sample(path, n_pairwise, n_pointwise, seed)`` writes a valid gold-format file (``docs/gold-format.md``)
  and returns the number of lines. Items are factual questions about capital cities with a reference answer;
  a correct answer restates the reference, a wrong one names another city. Pairwise: the correct answer wins
  (tie when both are correct); pointwise (criterion ``hallucination``): correct passes, wrong fails.
- ``teacher["gpt-4"]`` is the true label except for a deterministic ``teacher_noise`` fraction, so a judge
  distilled from it can be compared against humans and teacher as on the real sets. The same seed gives the same
  file. It is synthetic and easy: it proves the machinery, not judge quality (the shared sets do that).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Poland", "Warsaw"), ("Sweden", "Stockholm"),
    ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Ireland", "Dublin"),
    ("Greece", "Athens"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Japan", "Tokyo"), ("China", "Beijing"),
    ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Argentina", "Buenos Aires"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Australia", "Canberra"),
    ("Turkey", "Ankara"), ("Russia", "Moscow"), ("Ukraine", "Kyiv"), ("Czechia", "Prague"), ("Belgium", "Brussels"),
    ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"),
    ("Iceland", "Reykjavik"), ("Cuba", "Havana"), ("Colombia", "Bogota"), ("Indonesia", "Jakarta"),
]
QUESTIONS = [
    "What is the capital of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital city of {c}.",
    "Tell me the capital of {c}, please.",
]
RIGHT = ["The capital of {c} is {k}.", "{k} is the capital of {c}.", "It is {k}, the capital city of {c}."]
WRONG = ["The capital of {c} is {w}.", "{w} is the capital of {c}.", "It is {w}, which is the capital of {c}."]


def _items(n_pairwise: int, n_pointwise: int, seed: int, teacher_noise: float):
    rng = random.Random(seed)
    others = [k for _, k in CAPITALS]
    for i in range(n_pairwise + n_pointwise):
        country, capital = rng.choice(CAPITALS)
        fmt = {"c": country, "k": capital, "w": rng.choice([o for o in others if o != capital])}
        question = rng.choice(QUESTIONS).format(**fmt)
        reference = f"The capital of {country} is {capital}."
        right, wrong = rng.choice(RIGHT).format(**fmt), rng.choice(WRONG).format(**fmt)
        if i < n_pairwise:
            shape = rng.random()
            if shape < 0.15:
                a, b, label = right, rng.choice(RIGHT).format(**fmt), "tie"
            elif shape < 0.575:
                a, b, label = right, wrong, "A"
            else:
                a, b, label = wrong, right, "B"
            noisy = {"A": "B", "B": "A", "tie": "A"}[label] if rng.random() < teacher_noise else label
            yield {"id": f"sample-pair-{i}", "source": "judgeline sample", "kind": "pairwise", "criterion": "overall",
                   "question": question, "answer_a": a, "answer_b": b, "reference": reference,
                   "human_label": label, "teacher": {"gpt-4": noisy}, "teacher_swapped": {}, "meta": {}}
        else:
            ok = rng.random() < 0.6
            label = "pass" if ok else "fail"
            noisy = {"pass": "fail", "fail": "pass"}[label] if rng.random() < teacher_noise else label
            yield {"id": f"sample-point-{i}", "source": "judgeline sample", "kind": "pointwise",
                   "criterion": "hallucination", "question": question, "answer": right if ok else wrong,
                   "reference": reference, "human_label": label, "teacher": {"gpt-4": noisy},
                   "teacher_swapped": {}, "meta": {}}


def write_sample(path: Path, n_pairwise: int = 160, n_pointwise: int = 300, seed: int = 7,
                 teacher_noise: float = 0.1) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(item) for item in _items(n_pairwise, n_pointwise, seed, teacher_noise)]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)
