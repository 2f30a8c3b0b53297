"""The embedded frontier: an OpenAI-compatible server that answers with recorded teacher verdicts from gold files.

It is the frontier judge of the demo and the tests, reached by the real ``openai`` client over HTTP
(``judgeline frontier-replay``, whose options are the only declaration of them: ``start`` runs that command as a
service by PID like the rest of the stack, ``healthy`` probes it; the fault options are ``doubles.faults.Faults``).

Contract:
- ``POST /v1/chat/completions`` takes a prompt rendered by ``judge_engine.clients.frontier_prompt`` and recovers kind,
  criterion, question and the answers in the order shown (``parse_prompt``). The lookup key is a SHA-256 of
  (kind, criterion, question, answers as shown); every pairwise gold item is indexed in both orders. For the
  original order the answer is ``teacher[judge]``; for the swapped order ``teacher_swapped[judge]`` (stored mapped
  back to the original order) or else ``teacher[judge]``, swapped into the order shown. The reply is in the
  documented format: one line naming the replayed item, then ``VERDICT: <label>``.
- Several gold items can share a prompt (the PandaLM set repeats some with different recorded verdicts): when
  their verdicts agree that verdict is served; otherwise the request's ``X-Judgeline-Trace-Id`` header picks the
  item with that id among them; otherwise the answer is 409 (ambiguous). The header never selects an item the
  prompt does not match.
- Honest errors, in OpenAI's error JSON (``{"error": {"message", "type", "param", "code"}}``): 404
  ``item_not_recorded`` for a prompt no gold item matches, 404 ``verdict_not_recorded`` for an item without a
  recorded verdict of the judge, 404 ``model_not_found`` for a model the server does not serve, 400 for a request
  that is not a judgeline prompt or asks for streaming / several choices, 409 for an ambiguous prompt.
- ``usage`` is estimated: ``frontier_prompt.estimate_tokens`` (ceil(characters / 4)) of all message contents, and
  of the reply.
- Fault injection, deterministic so tests can rely on it: with fraction f the n-th chat completion (1-based) is
  refused when ceil(n*f) > ceil((n-1)*f), i.e. exactly a fraction f of requests, the first one included: 429 with
  ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``, and, among the requests that passed that
  check, 500 the same way. Latency: every chat completion waits ``latency_ms`` plus a uniform [0, ``jitter_ms``]
  (seeded) before it is answered, injected errors included.
- ``GET /v1/models`` lists the judges served, ``GET /health`` reports items and judges, ``GET /stats`` the
  counters (requests, in flight, the most in flight at once, injected faults, arrival times, and ``by_trace``: the
  chat completions per ``X-Judgeline-Trace-Id``, so a test sees a trace asked for twice, e.g. a batch redelivered
  after a worker was killed; at most ``MAX_TRACKED_TRACES`` ids are tracked, later new ids are not) and
  ``POST /stats/reset`` zeroes them.
- Served by ``aiohttp.web`` (``app(replay)``; ``serve`` runs it until SIGTERM or Ctrl-C), all state on the app, so
  servers in one process share nothing. Binds to a loopback address only. Request headers (the API key) and
  prompts are never logged; a request body over 8 MiB is refused (413) before it is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Sequence

from aiohttp import web

from doubles.faults import Faults
from judge_engine.clients.frontier_prompt import (
    PromptFormatError,
    estimate_tokens,
    parse_prompt,
)
from schemas import paths
from schemas.base import LABELS_BY_KIND, SWAPPED_LABEL
from stack import process

log = logging.getLogger("judgeline.frontier_replay")

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TRACE_HEADER = "X-Judgeline-Trace-Id"
DEFAULT_GOLD_DIR = paths.SHARED_GOLD
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TRACKED_TRACES = 100_000


def prompt_key(kind: str, criterion: str, question: str, answers: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([kind, criterion, question, list(answers)], ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One gold item as indexed under one answer order."""

    item_id: str
    source_file: str
    swapped: bool
    teacher: dict[str, str | None]
    teacher_swapped: dict[str, str | None]

    def label(self, judge: str) -> str | None:
        """The recorded verdict of ``judge`` in the order shown (None when there is none)."""
        if not self.swapped:
            return self.teacher.get(judge)
        original = self.teacher_swapped.get(judge) or self.teacher.get(judge)
        return SWAPPED_LABEL[original] if original is not None else None


@dataclass
class Index:
    entries: dict[str, list[Entry]] = field(default_factory=dict)
    items: int = 0
    bad_lines: int = 0
    files: list[str] = field(default_factory=list)

    def add(self, key: str, entry: Entry) -> None:
        self.entries.setdefault(key, []).append(entry)


def load_index(gold_files: Iterable[str | Path]) -> Index:
    """Index every item of the gold files under its prompt key (pairwise items under both orders)."""
    from schemas.gold import GoldLabel, read_gold_file

    index = Index()
    for path in gold_files:
        path = Path(path)
        index.files.append(str(path))
        for number, item in read_gold_file(path):
            if not isinstance(item, GoldLabel):
                index.bad_lines += 1
                log.warning("%s line %d skipped: %s", path.name, number, item.reason)
                continue
            index.items += 1
            teacher, swapped = dict(item.teacher), dict(item.teacher_swapped)
            if item.kind == "pairwise":
                index.add(prompt_key(item.kind, item.criterion, item.question, (item.answer_a, item.answer_b)),
                          Entry(item.id, path.name, False, teacher, swapped))
                if item.answer_a != item.answer_b:  # identical answers: both orders are the same prompt
                    index.add(prompt_key(item.kind, item.criterion, item.question, (item.answer_b, item.answer_a)),
                              Entry(item.id, path.name, True, teacher, swapped))
            else:
                index.add(prompt_key(item.kind, item.criterion, item.question, (item.answer,)),
                          Entry(item.id, path.name, False, teacher, swapped))
    return index


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str | None, type_: str = "invalid_request_error",
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.type, self.param = status, message, code, type_, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _every(fraction: Fraction, n: int) -> bool:
    """True for exactly a fraction of n = 1, 2, 3, ..., the first one included (when fraction > 0)."""
    return math.ceil(n * fraction) > math.ceil((n - 1) * fraction)


class Replay:
    """The server's state: the index, the judges served, fault injection and counters (one event loop)."""

    def __init__(self, index: Index, judges: Sequence[str], faults: Faults = Faults()):
        if not judges:
            raise ValueError("serve at least one judge")
        self.index = index
        self.judges = tuple(judges)
        self.faults = faults
        self._f429 = Fraction(faults.rate_limit_fraction).limit_denominator(10**6)
        self._f500 = Fraction(faults.server_error_fraction).limit_denominator(10**6)
        self._rng = random.Random(faults.seed)
        self._t0 = time.monotonic()
        self.reset()

    def reset(self) -> None:
        """Zero the counters (requests still in flight stay counted as in flight)."""
        self.requests = 0
        self.passed_429 = 0
        self.in_flight = getattr(self, "in_flight", 0)
        self.max_in_flight = self.in_flight
        self.injected_429 = 0
        self.injected_500 = 0
        self.answered = 0
        self.errors = 0
        self.arrivals: deque[float] = deque(maxlen=10_000)
        self.by_trace: dict[str, int] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
            "injected_429": self.injected_429, "injected_500": self.injected_500, "answered": self.answered,
            "errors": self.errors, "arrivals_s": list(self.arrivals), "by_trace": dict(self.by_trace),
        }

    def begin(self, trace_id: str | None = None) -> tuple[str | None, float]:
        """Count an arriving chat completion (of ``trace_id`` when the request names one); returns (fault to inject
        or None, seconds to wait first)."""
        self.requests += 1
        if trace_id is not None and (trace_id in self.by_trace or len(self.by_trace) < MAX_TRACKED_TRACES):
            self.by_trace[trace_id] = self.by_trace.get(trace_id, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.arrivals.append(time.monotonic() - self._t0)
        delay = (self.faults.latency_ms + self._rng.uniform(0, self.faults.jitter_ms)) / 1000
        if self._f429 and _every(self._f429, self.requests):
            self.injected_429 += 1
            return "429", delay
        self.passed_429 += 1
        if self._f500 and _every(self._f500, self.passed_429):
            self.injected_500 += 1
            return "500", delay
        return None, delay

    def end(self, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.answered += 1
        else:
            self.errors += 1

    def complete(self, body: Any, trace_id: str | None) -> dict[str, Any]:
        """The chat completion for a request body, or ApiError."""
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "invalid_body")
        model = body.get("model")
        if model not in self.judges:
            raise ApiError(404, f"The model {json.dumps(model)} is not served by this replay server; it serves "
                                f"{', '.join(self.judges)}", "model_not_found", param="model")
        if body.get("stream"):
            raise ApiError(400, "streaming is not supported by the replay server", "unsupported_parameter",
                           param="stream")
        if body.get("n") not in (None, 1):
            raise ApiError(400, "the replay server returns one choice (n=1)", "unsupported_parameter", param="n")
        messages = body.get("messages")
        if not isinstance(messages, list):
            raise ApiError(400, "messages must be a list", "invalid_messages", param="messages")
        try:
            fields = parse_prompt(messages)
        except PromptFormatError as e:
            raise ApiError(400, f"not a judgeline frontier prompt ({e}); the replay server only answers prompts "
                                "rendered by judge_engine.clients.frontier_prompt", "not_a_judgeline_prompt",
                           param="messages") from None
        entries = self.index.entries.get(prompt_key(fields.kind, fields.criterion, fields.question, fields.answers))
        if not entries:
            raise ApiError(404, f"no recorded {fields.kind} item matches this prompt (criterion "
                                f"{json.dumps(fields.criterion)}, question and answers as shown); this server "
                                f"replays only the {self.index.items} items of its gold files", "item_not_recorded")
        if trace_id and any(e.item_id == trace_id for e in entries):
            entries = [e for e in entries if e.item_id == trace_id]
        labelled = [(e, e.label(model)) for e in entries if e.label(model) is not None]
        if not labelled:
            ids = ", ".join(sorted({e.item_id for e in entries}))
            raise ApiError(404, f"gold item {ids} has no recorded verdict of {model}", "verdict_not_recorded")
        if len({label for _, label in labelled}) > 1:
            ids = ", ".join(f"{e.item_id}={label}" for e, label in labelled)
            raise ApiError(409, f"{len(labelled)} recorded items share this prompt with different verdicts of "
                                f"{model} ({ids}); send the item id in the {TRACE_HEADER} header",
                           "ambiguous_prompt")
        entry, label = labelled[0]
        if label not in LABELS_BY_KIND[fields.kind]:
            raise ApiError(404, f"gold item {entry.item_id} records {label!r}, not a {fields.kind} label",
                           "verdict_not_recorded")
        order = "answers swapped" if entry.swapped else "original order"
        reply = (f"Replayed the recorded verdict of {model} for gold item {entry.item_id} of {entry.source_file} "
                 f"({order}).\nVERDICT: {label}")
        prompt_tokens = sum(estimate_tokens(_content_text(m)) for m in messages if isinstance(m, dict))
        completion_tokens = estimate_tokens(reply)
        return {
            "id": f"chatcmpl-replay-{hashlib.sha256(f'{entry.item_id}:{time.time_ns()}'.encode()).hexdigest()[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


def _content_text(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


REPLAY = web.AppKey("replay", Replay)


def app(replay: Replay) -> web.Application:
    application = web.Application(middlewares=[_errors], client_max_size=MAX_BODY_BYTES)
    application[REPLAY] = replay
    application.add_routes([
        web.post("/v1/chat/completions", _chat_completion), web.get("/v1/models", _models),
        web.get("/health", _health), web.get("/stats", _stats), web.post("/stats/reset", _reset),
    ])
    return application


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=lambda d: json.dumps(d, ensure_ascii=False))


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error in OpenAI's JSON shape; a bug answers 500 rather than dropping the connection. Logs the method
    and path only, never headers (the API key) or bodies (prompts)."""
    log.debug("%s %s", request.method, request.path)
    try:
        return await handler(request)
    except ApiError as e:
        return _json(e.body(), e.status, e.headers)
    except web.HTTPRequestEntityTooLarge:
        return _json(ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", "body_too_large").body(), 413)
    except web.HTTPException as e:  # unknown path, wrong method: aiohttp's status, OpenAI's shape
        code = "not_found" if e.status == 404 else None
        return _json(ApiError(e.status, f"{e.reason}: {request.method} {request.path}", code).body(), e.status)
    except Exception as e:
        log.exception("chat completion failed")
        return _json(ApiError(500, f"replay server error: {type(e).__name__}", None, type_="server_error").body(), 500)


async def _chat_completion(request: web.Request) -> web.Response:
    replay = request.app[REPLAY]
    raw = await request.read()  # over client_max_size: HTTPRequestEntityTooLarge, answered 413 by _errors
    fault, delay = replay.begin(request.headers.get(TRACE_HEADER))
    ok = False
    try:
        if delay:
            await asyncio.sleep(delay)
        if fault == "429":
            wait = replay.faults.retry_after_s
            raise ApiError(429, f"Rate limit reached (injected by the replay server); retry after {wait:g} s",
                           "rate_limit_exceeded", type_="requests",
                           headers={"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(round(wait * 1000))})
        if fault == "500":
            raise ApiError(500, "internal error (injected by the replay server)", None, type_="server_error")
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the request body is not JSON: {e}", "invalid_json") from None
        answer = replay.complete(body, request.headers.get(TRACE_HEADER))
        ok = True
        return _json(answer)
    finally:
        replay.end(ok)


async def _health(request: web.Request) -> web.Response:
    replay = request.app[REPLAY]
    return _json({"status": "ok", "items": replay.index.items, "judges": list(replay.judges)})


async def _models(request: web.Request) -> web.Response:
    return _json({"object": "list", "data": [
        {"id": j, "object": "model", "created": 0, "owned_by": "judgeline-frontier-replay"}
        for j in request.app[REPLAY].judges]})


async def _stats(request: web.Request) -> web.Response:
    return _json(request.app[REPLAY].stats())


async def _reset(request: web.Request) -> web.Response:
    request.app[REPLAY].reset()
    return _json({"reset": True})


def serve(gold_files: Sequence[str | Path], host: str, port: int, judges: Sequence[str] = ("gpt-4",),
          faults: Faults = Faults()) -> None:
    """Serve until SIGTERM / Ctrl-C (aiohttp's ``run_app`` handles both and closes the connections)."""
    if host not in LOOPBACK:
        raise SystemExit(f"the frontier replay binds to a loopback address only, not {host!r}")
    if not gold_files:
        raise SystemExit("no gold files given; pass --gold FILE (gold format, with recorded teacher verdicts)")
    index = load_index(gold_files)
    log.info("frontier replay on http://%s:%d/v1: %d items (%d bad lines) from %s; judges %s; faults %s",
             host, port, index.items, index.bad_lines, ", ".join(index.files), ", ".join(judges), faults)
    web.run_app(app(Replay(index, judges, faults)), host=host, port=port, access_log=None, print=None)


# --- how tests and the demo run this server as a service (by PID, like stack/services.py's services) ---


def start(
    settings,
    gold_files: Sequence[str | Path],
    *,
    judges: Sequence[str] | None = None,
    port: int | None = None,
    faults: Faults = Faults(),
    name: str = "frontier-replay",
) -> process.ServiceRecord:
    """Start the server on ``settings.stack.bind_host`` (a free port unless ``port``) serving ``judges``
    (default: ``settings.frontier.model``). The record's ``extra["base_url"]`` is the OpenAI base URL."""
    host = settings.stack.bind_host
    port = port or process.free_port(host)
    command = [sys.executable, "-m", "cli.main", "frontier-replay", "--port", str(port)]
    for path in gold_files:
        command += ["--gold", str(Path(path).resolve())]
    for judge in judges or (settings.frontier.model,):
        command += ["--judge", judge]
    command += faults.to_args()
    return process.start(name, command, settings.state_dir, cwd=Path(__file__).resolve().parent.parent,
                         env={"JUDGELINE_STACK__BIND_HOST": host, "JUDGELINE_LOG_LEVEL": settings.log_level},
                         ports={"http": port}, extra={"base_url": f"http://{host}:{port}/v1"})


def healthy(settings, record: process.ServiceRecord) -> bool:
    import urllib.request

    url = f"http://{settings.stack.bind_host}:{record.ports['http']}/health"
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200 and json.loads(r.read()).get("status") == "ok"
