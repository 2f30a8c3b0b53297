"""PII redaction before the frontier: each built-in pattern on examples (and what it leaves alone), the hook, the
settings, and that only what is sent to the frontier changes (the request, its trace and the verdict do not)."""

import asyncio

import pytest
from frontier_support import ScriptedModel
from pydantic import ValidationError

from judge_engine.clients.frontier_client import FrontierJudge
from judge_engine.clients.frontier_prompt import parse_prompt
from judge_engine.clients.redaction import (
    PATTERNS,
    RedactionError,
    redact_trace,
    redactor,
)
from schemas.settings import REDACT_PATTERNS, FrontierSettings, Settings
from schemas.trace import Trace
from schemas.verdict import FrontierRequest


@pytest.mark.parametrize("name,text,expected", [
    ("email", "write to jane.doe+x@mail.example.co.uk today", "write to [REDACTED EMAIL] today"),
    ("credit_card", "card 4111 1111 1111 1111 exp", "card [REDACTED CREDIT_CARD] exp"),
    ("credit_card", "card 5500-0000-0000-0004.", "card [REDACTED CREDIT_CARD]."),
    ("credit_card", "order 1234 5678 9012 3456", "order 1234 5678 9012 3456"),  # not Luhn-valid: not a card
    ("ipv4", "from 192.168.10.254, then 8.8.8.8.", "from [REDACTED IPV4], then [REDACTED IPV4]."),
    ("ipv4", "version 3.11.4 and 999.1.1.1", "version 3.11.4 and 999.1.1.1"),
    ("ipv6", "host 2001:db8::8a2e:370:7334 up", "host [REDACTED IPV6] up"),
    ("ipv6", "at 12:30:45 sharp", "at 12:30:45 sharp"),
    ("phone", "call +44 20 7946 0958 or (555) 123-4567 or 555.123.4567", "call [REDACTED PHONE] or "
     "[REDACTED PHONE] or [REDACTED PHONE]"),
    ("phone", "on 2024-01-15, pi is 3.14159, 42 items, id 12345", "on 2024-01-15, pi is 3.14159, 42 items, id 12345"),
])
def test_each_pattern_redacts_what_it_names_and_leaves_the_rest(name, text, expected):
    assert PATTERNS[name](text) == expected


def test_the_patterns_are_the_settings_names_in_the_same_order():
    assert tuple(PATTERNS) == REDACT_PATTERNS


def test_settings_name_the_patterns_and_the_hook():
    assert Settings(frontier={"redact": " phone, email ,"}).frontier.redact == "email,phone"
    with pytest.raises(ValidationError, match="unknown redaction pattern.*emial.*JUDGELINE_FRONTIER__REDACT"):
        Settings(frontier={"redact": "emial"})
    with pytest.raises(ValidationError, match="redact_hook"):
        Settings(frontier={"redact_hook": "no colon"})
    with pytest.raises(ValueError, match="JUDGELINE_FRONTIER__REDACT_HOOK"):
        redactor(FrontierSettings(redact_hook="no_such_module_judgeline:f"))
    assert redactor(FrontierSettings()) is None


def test_patterns_then_hook_in_one_function():
    fn = redactor(FrontierSettings(redact="email,ipv4", redact_hook="html:escape"))
    assert fn("<b>a@b.io</b> from 10.0.0.1") == "&lt;b&gt;[REDACTED EMAIL]&lt;/b&gt; from [REDACTED IPV4]"


def test_a_failing_hook_raises_without_the_text():
    with pytest.raises(RedactionError, match="returned int") as e:
        redactor(FrontierSettings(redact_hook="builtins:len"))("secret a@b.io")
    assert "a@b.io" not in str(e.value)
    with pytest.raises(RedactionError, match="TypeError"):
        redactor(FrontierSettings(redact_hook="os:getcwd"))("x")


def test_redact_trace_changes_only_the_texts_the_frontier_sees():
    trace = Trace(trace_id="t-1", kind="pairwise", tenant="a@b.io", criterion="helpfulness", question="Mail a@b.io?",
                  answer_a="Yes: a@b.io", answer_b="No", reference="ref a@b.io", context="ctx a@b.io",
                  metadata={"user": "a@b.io"})
    shown = redact_trace(trace, redactor(FrontierSettings(redact="email")))
    assert shown is not trace and trace.question == "Mail a@b.io?"
    assert (shown.question, shown.answer_a, shown.answer_b, shown.reference, shown.context) == (
        "Mail [REDACTED EMAIL]?", "Yes: [REDACTED EMAIL]", "No", "ref [REDACTED EMAIL]", "ctx [REDACTED EMAIL]")
    assert (shown.trace_id, shown.tenant, shown.metadata) == (trace.trace_id, trace.tenant, trace.metadata)
    assert redact_trace(trace, None) is trace


def _judge(settings: FrontierSettings, request: FrontierRequest):
    model = ScriptedModel(lambda _: "fine\nVERDICT: pass")

    async def run():
        return await FrontierJudge(settings, client=model).judge(request)

    return asyncio.run(run()), model.sent


def test_only_what_goes_to_the_frontier_is_redacted():
    trace = Trace(trace_id="t-2", kind="pointwise", question="Is +1 (555) 123-4567 Bob's number? Mail bob@x.org",
                  answer="Yes, and his card is 4111111111111111.")
    request = FrontierRequest(trace=trace, reason="calibration_sample")
    before = request.to_bytes()
    verdict, sent = _judge(FrontierSettings(redact="email,phone,credit_card", rate_limit_rps=10_000), request)
    shown = parse_prompt(sent[0])
    assert shown.question == "Is [REDACTED PHONE] Bob's number? Mail [REDACTED EMAIL]"
    assert shown.answers == ("Yes, and his card is [REDACTED CREDIT_CARD].",)
    assert not any(pii in m["content"] for m in sent[0] for pii in ("555", "bob@x.org", "4111"))
    assert request.to_bytes() == before and verdict.status == "ok" and verdict.trace_id == "t-2"
    plain, sent = _judge(FrontierSettings(rate_limit_rps=10_000), request)  # off by default: sent as it is
    assert parse_prompt(sent[0]).question == trace.question and plain.status == "ok"


def test_a_failing_hook_sends_nothing_and_rejects_the_item():
    request = FrontierRequest(trace=Trace(trace_id="t-3", kind="pointwise", question="q a@b.io", answer="a"),
                              reason="low_confidence")
    verdict, sent = _judge(FrontierSettings(redact_hook="builtins:len", rate_limit_rps=10_000), request)
    assert sent == [] and verdict.status == "rejected" and "nothing was sent" in verdict.error
    assert "a@b.io" not in verdict.error
