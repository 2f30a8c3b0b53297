"""The async client of the served judge: micro-batches of items -> verdicts with calibrated confidence.

Contract:
- ``TritonJudge(settings.triton)`` talks gRPC to Triton (``tritonclient.grpc.aio``); ``await judge(items)`` takes
  traces, gold items or item dicts (``dataset.item_dict``) and returns one ``JudgeResult`` per item, in order.
- A batch larger than the model's ``max_batch_size`` is split into requests grouped by text (``request_order``:
  items sharing a question, reference or answers go in the same request, since the judge encodes each distinct text
  of a request once; measured 2.3x on a shuffled 640-item PandaLM batch in requests of 64), at most
  ``max_concurrent_requests`` of them in flight at once (the others wait in the client, so a request's deadline
  measures its own inference, not a queue behind its siblings); Triton's dynamic batcher merges concurrent requests
  from every client again on the server.
- Every request has a deadline (``timeout_s``). Failures go through the one failure policy
  (``judge_engine.failures``): transient ones (UNAVAILABLE, DEADLINE_EXCEEDED, connection refused...) are retried
  with backoff up to ``max_retries`` times, then ``GaveUp`` is raised; permanent ones (INVALID_ARGUMENT: bad
  input the model refused, unknown model) are raised at once. The caller decides what a failure means (the
  inline agent dead-letters bad input and applies its routing policy to an unavailable judge).
- The answer is checked before it is used: every output must have exactly one row per item (and PROBS three
  columns); otherwise ``JudgeAnswerMismatch`` (a ``ValueError``: permanent under the failure policy) names the
  output, the shape received and the shape expected. Nothing is zipped past a short answer.
- Each result carries the model name and the version that answered (Triton's response), so every verdict names
  the judge version that produced it, and the round-trip time of its request; and the item's ``novelty`` where
  the model declares a ``NOVELTY`` output (read once from the model's metadata) and the version has an index
  (NaN from the server, None here otherwise).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from judge_engine.dataset import item_dict
from judge_engine.failures import JitteredWait, retrying
from schemas.settings import TritonSettings

INPUTS = ("KIND", "CRITERION", "QUESTION", "ANSWER_A", "ANSWER_B", "REFERENCE")
OUTPUTS = ("LABEL", "SCORE", "CONFIDENCE", "PROBS", "SWAP_CONSISTENT")
NOVELTY = "NOVELTY"  # requested only where the model's configuration declares it (repositories from issue 15 on)


@dataclass(frozen=True)
class JudgeResult:
    label: str
    score: float
    confidence: float
    probs: tuple[float, ...]
    swap_consistent: bool
    model_name: str
    model_version: str
    latency_ms: float
    novelty: float | None = None  # how unlike the judge's training data the item is, where the model reports it


def _columns(items: list[dict]) -> dict[str, list[str]]:
    cols = {name: [] for name in INPUTS}
    for it in items:
        pair = it["kind"] == "pairwise"
        cols["KIND"].append(it["kind"])
        cols["CRITERION"].append(it.get("criterion") or "overall")
        cols["QUESTION"].append(it["question"])
        cols["ANSWER_A"].append(it["answer_a"] if pair else it["answer"])
        cols["ANSWER_B"].append(it["answer_b"] if pair else "")
        cols["REFERENCE"].append(it.get("reference") or "")
    return cols


class JudgeAnswerMismatch(ValueError):
    """The model answered with the wrong number of rows or the wrong shape (permanent: the same input would get the
    same answer)."""


def _checked_outputs(result, n: int, model: str):
    """LABEL, SCORE, CONFIDENCE (one value per item), PROBS (n x 3), SWAP_CONSISTENT, or ``JudgeAnswerMismatch``."""
    out = []
    for name in OUTPUTS:
        array = result.as_numpy(name)
        if array is None:
            raise JudgeAnswerMismatch(f"model {model!r} returned no {name} output; expected one row per item ({n})")
        want = (n, 3) if name == "PROBS" else (n,)
        got = array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, -1)
        if got.shape[0] != n or (name == "PROBS" and got.shape[1] != 3) or (name != "PROBS" and got.shape[1] != 1):
            raise JudgeAnswerMismatch(f"model {model!r} returned {name} of shape {tuple(array.shape)} for {n} items; "
                                      f"expected {want if name == 'PROBS' else (n, 1)}")
        out.append(got if name == "PROBS" else got.reshape(-1))
    return out


class TritonJudge:
    def __init__(self, settings: TritonSettings, max_batch_size: int = 64, backoff: JitteredWait = JitteredWait()):
        import tritonclient.grpc.aio as grpcclient

        self._grpc = grpcclient
        self.settings = settings
        self.max_batch_size = max_batch_size
        self.backoff = backoff
        self.client = grpcclient.InferenceServerClient(settings.url)
        self._outputs: tuple[str, ...] | None = None
        self._in_flight = asyncio.Semaphore(settings.max_concurrent_requests)

    async def __aenter__(self) -> "TritonJudge":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> bool:
        return await self.client.is_model_ready(self.settings.model_name, self.settings.model_version)

    async def _requested_outputs(self) -> tuple[str, ...]:
        if self._outputs is None:
            meta = await self.client.get_model_metadata(self.settings.model_name, self.settings.model_version)
            declared = {o.name for o in meta.outputs}
            self._outputs = OUTPUTS + ((NOVELTY,) if NOVELTY in declared else ())
        return self._outputs

    async def _infer(self, items: list[dict]) -> list[JudgeResult]:
        g = self._grpc
        requested = await self._requested_outputs()
        inputs = []
        for name, values in _columns(items).items():
            tensor = g.InferInput(name, [len(items), 1], "BYTES")
            tensor.set_data_from_numpy(np.array([v.encode("utf-8") for v in values], dtype=object).reshape(-1, 1))
            inputs.append(tensor)
        started = time.perf_counter()
        result = await self.client.infer(
            self.settings.model_name,
            inputs,
            model_version=self.settings.model_version,
            outputs=[g.InferRequestedOutput(n) for n in requested],
            client_timeout=self.settings.timeout_s,
        )
        latency = (time.perf_counter() - started) * 1000.0
        response = result.get_response()
        labels, score, conf, probs, consistent = _checked_outputs(result, len(items), response.model_name)
        novelty = result.as_numpy(NOVELTY).reshape(-1) if NOVELTY in requested else None
        if novelty is not None and len(novelty) != len(items):
            raise JudgeAnswerMismatch(f"model {response.model_name!r} returned {NOVELTY} of shape "
                                      f"{tuple(novelty.shape)} for {len(items)} items; expected ({len(items)}, 1)")
        return [
            JudgeResult(
                label=labels[i].decode() if isinstance(labels[i], bytes) else str(labels[i]),
                score=float(score[i]),
                confidence=float(conf[i]),
                probs=tuple(float(p) for p in probs[i]),
                swap_consistent=bool(consistent[i]),
                model_name=response.model_name,
                model_version=response.model_version,
                latency_ms=latency,
                novelty=None if novelty is None or np.isnan(novelty[i]) else float(novelty[i]),
            )
            for i in range(len(items))
        ]

    async def _infer_with_retries(self, items: list[dict]) -> list[JudgeResult]:
        retry = retrying(what=f"triton {self.settings.model_name} ({len(items)} items)",
                         attempts=self.settings.max_retries + 1, wait=self.backoff)
        async with self._in_flight:
            return await retry(self._infer, items)

    async def judge(self, items: Iterable) -> list[JudgeResult]:
        rows = [item_dict(it) for it in items]
        if not rows:
            return []
        order = request_order(rows) if len(rows) > self.max_batch_size else list(range(len(rows)))
        sent = [rows[i] for i in order]
        chunks = [sent[i : i + self.max_batch_size] for i in range(0, len(sent), self.max_batch_size)]
        parts = await asyncio.gather(*(self._infer_with_retries(c) for c in chunks))
        results: list = [None] * len(rows)
        for position, result in zip(order, (r for part in parts for r in part)):
            results[position] = result
        return results


TEXT_FIELDS = ("question", "reference", "answer_a", "answer_b", "answer")


def request_order(rows: list[dict]) -> list[int]:
    """The order to send ``rows`` in (a permutation of their indexes): items with the same texts next to each other,
    so that they share a request; stable for items whose texts are all equal."""
    return sorted(range(len(rows)), key=lambda i: tuple(str(rows[i].get(f) or "") for f in TEXT_FIELDS))
