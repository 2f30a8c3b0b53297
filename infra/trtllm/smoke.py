"""Smoke check of a running GPU judge: the `judge` model answers the CPU judge's interface, order-invariantly.

Contract (standard library only; ``python3 infra/trtllm/smoke.py --url http://127.0.0.1:8000``): sends one batch
over Triton's HTTP/JSON protocol with a pairwise item, the same item with its answers swapped, and a pointwise
item; exits 0 only if every output of the interface is present with the right shape, labels are in the label
vocabulary, each probability vector sums to 1, and the swapped twin's PROBS are the original's with A and B
exchanged (within 1e-4) with the mirrored label. Prints the verdicts as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

FIELDS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")
ROWS = [
    (
        "pairwise",
        "overall",
        "What is the capital of France?",
        "Paris is the capital of France.",
        "The capital of France is Lyon.",
        "",
    ),
    (
        "pairwise",
        "overall",
        "What is the capital of France?",
        "The capital of France is Lyon.",
        "Paris is the capital of France.",
        "",
    ),
    (
        "pointwise",
        "hallucination",
        "Who wrote Hamlet?",
        "Hamlet was written by Charles Dickens in 1990.",
        "",
        "William Shakespeare",
    ),
]
MIRROR = {"A": "B", "B": "A", "tie": "tie"}


def infer(url: str, model: str, rows) -> dict:
    body = {
        "inputs": [
            {"name": name, "shape": [len(rows), 1], "datatype": "BYTES", "data": [r[i] for r in rows]}
            for i, name in enumerate(FIELDS)
        ]
    }
    req = urllib.request.Request(
        f"{url.rstrip('/')}/v2/models/{model}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        out = json.loads(r.read())
    return {o["name"]: o for o in out["outputs"]}


def check(outputs: dict, n: int) -> list[str]:
    problems = []
    for name, width in (("LABEL", 1), ("SCORE", 1), ("CONFIDENCE", 1), ("PROBS", 3), ("SWAP_CONSISTENT", 1)):
        if name not in outputs:
            problems.append(f"output {name} is missing")
        elif outputs[name]["shape"] != [n, width]:
            problems.append(f"{name} has shape {outputs[name]['shape']}, expected {[n, width]}")
    if problems:
        return problems
    labels = outputs["LABEL"]["data"]
    probs = [outputs["PROBS"]["data"][3 * i : 3 * i + 3] for i in range(n)]
    for i, (label, p) in enumerate(zip(labels, probs)):
        allowed = ("A", "B", "tie") if i < 2 else ("pass", "fail")
        if label not in allowed:
            problems.append(f"row {i}: label {label!r} not in {allowed}")
        if abs(sum(p) - 1.0) > 1e-4:
            problems.append(f"row {i}: PROBS {p} do not sum to 1")
    if labels[1] != MIRROR.get(labels[0]):
        problems.append(f"swapped twin's label {labels[1]!r} is not the mirror of {labels[0]!r}")
    mirrored = [probs[0][1], probs[0][0], probs[0][2]]
    if any(abs(a - b) > 1e-4 for a, b in zip(probs[1], mirrored)):
        problems.append(f"swapped twin's PROBS {probs[1]} are not the mirror of {probs[0]}: not order-invariant")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="judge")
    args = parser.parse_args(argv)
    outputs = infer(args.url, args.model, ROWS)
    print(json.dumps({k: v["data"] for k, v in outputs.items()}, indent=2))
    problems = check(outputs, len(ROWS))
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
