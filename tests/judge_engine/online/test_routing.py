"""Routing: the deterministic calibration sample (a lower rate is a subset of a higher one) and the threshold."""

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from judge_engine.online.routing import in_calibration_sample, route, sample_point
from schemas.settings import RoutingSettings

ids = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=64)
rates = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(ids, rates, rates)
@hsettings(max_examples=300, deadline=None)
def test_a_lower_rate_samples_a_subset_of_a_higher_rate(trace_id, r1, r2):
    low, high = sorted((r1, r2))
    if in_calibration_sample(trace_id, low):
        assert in_calibration_sample(trace_id, high)


@given(ids)
def test_the_point_is_deterministic_and_in_the_unit_interval(trace_id):
    p = sample_point(trace_id)
    assert 0.0 <= p < 1.0 and sample_point(trace_id) == p
    assert not in_calibration_sample(trace_id, 0.0) and in_calibration_sample(trace_id, 1.0)


def test_the_point_is_stable_across_processes_and_versions():
    # SHA-256 of the id, not Python's salted hash(): a pinned value catches any change of the function
    assert sample_point("trace-1") == int("17fe6f303311c0b1", 16) / 2**64


def test_the_sampled_fraction_matches_the_rate():
    n = 20_000
    for rate in (0.01, 0.05, 0.3):
        hits = sum(in_calibration_sample(f"t-{i}", rate) for i in range(n))
        assert abs(hits / n - rate) < 4 * (rate * (1 - rate) / n) ** 0.5 + 1e-3, (rate, hits)


def test_low_confidence_wins_then_the_sample_then_nothing():
    sampled = next(f"t-{i}" for i in range(1000) if in_calibration_sample(f"t-{i}", 0.1))
    unsampled = next(f"t-{i}" for i in range(1000) if not in_calibration_sample(f"t-{i}", 0.1))
    routing = RoutingSettings(threshold=0.7, calibration_sample_rate=0.1)
    assert route(0.69, sampled, routing) == "low_confidence"
    assert route(0.69, unsampled, routing) == "low_confidence"
    assert route(0.7, sampled, routing) == "calibration_sample"  # the threshold itself is confident enough
    assert route(0.99, unsampled, routing) is None
    assert route(0.99, sampled, RoutingSettings(threshold=0.7, calibration_sample_rate=0.0)) is None
    assert route(0.0, unsampled, RoutingSettings(threshold=0.0, calibration_sample_rate=0.0)) is None


def test_a_rate_outside_the_unit_interval_is_refused():
    with pytest.raises(ValueError, match="rate"):
        in_calibration_sample("t", 1.5)
