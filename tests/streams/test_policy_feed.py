"""The worker's policy feed without a broker: only its scope, only newer versions, bad messages logged and skipped
(the worker keeps the policy it had). The feed on the real broker is in tests/streams/test_routing_live.py."""

import logging
from datetime import datetime, timezone

from judge_engine.online.policy import RoutingPolicy
from schemas.settings import Settings
from streams.policy_feed import PolicyFeed

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_offer_keeps_the_newest_policy_of_its_scope_and_skips_bad_messages(caplog):
    feed = PolicyFeed(Settings(routing={"policy_scope": "eu"}))
    v2, v3 = RoutingPolicy.cold_start(2, created_at=T0), RoutingPolicy.cold_start(3, created_at=T0)
    assert feed.current() is None
    assert not feed.offer(b"us", v2.to_json())  # another scope's policy
    assert feed.offer(b"eu", v2.to_json()) and feed.current() == v2
    assert feed.offer(b"eu", v3.to_json()) and feed.current() == v3
    assert not feed.offer(b"eu", v2.to_json()) and feed.current() == v3  # an older version never rolls back
    with caplog.at_level(logging.ERROR, logger="judgeline.policy_feed"):
        assert not feed.offer(b"eu", b'{"version": 9}', "routing[0]@7")
        assert not feed.offer(b"eu", None, "routing[0]@8")
    assert feed.current() == v3
    assert "routing[0]@7 is invalid" in caplog.text and "policy.accepted_error_rate is missing" in caplog.text
    assert "tombstone" in caplog.text and "keeps policy version 3" in caplog.text
