"""The per-request instruments: tallied in plain numbers, flushed into prometheus-client, and
exposed exactly as prometheus-client's own `inc()` and `observe()` would have exposed them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from scopegate.reasons import Reason
from scopegate.telemetry.metrics import LATENCY_BUCKETS, Metrics

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def samples(registry: CollectorRegistry) -> set[Sample]:
    """Every sample but the creation timestamps, which differ between two registries."""
    return {
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def answered_samples(found: set[Sample], names: tuple[str, ...]) -> set[Sample]:
    return {s for s in found if s[0].startswith(names)}


durations = st.one_of(
    st.sampled_from([0.0, *LATENCY_BUCKETS, 61.0]),  # the bounds themselves: `le` is inclusive
    st.floats(0, 100, allow_nan=False),
)
answers = st.lists(
    st.tuples(
        st.sampled_from(["list-contacts", "delete-contact", "unmatched"]),
        st.sampled_from(["GET", "DELETE", "PROPFIND", "BREW"]),
        st.sampled_from([200, 204, 403, 502]),
        durations,
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(answers, st.lists(durations, max_size=10), st.integers(0, 40))
def test_a_flushed_tally_exposes_what_observe_would_have(
    seen: list[tuple[str, str, int, float]], upstream: list[float], flush_after: int
) -> None:
    """Whenever the tallies are flushed (midway, or only by the scrape), the exposition is the
    one prometheus-client gives when every request is counted and observed on its own."""
    metrics = Metrics(CollectorRegistry())
    reference = CollectorRegistry()
    requests = Counter("scopegate_requests_total", "", ["route", "method", "code"],
                       registry=reference)  # fmt: skip
    durations = Histogram("scopegate_request_duration_seconds", "", ["route"],
                          buckets=LATENCY_BUCKETS, registry=reference)  # fmt: skip
    upstream_durations = Histogram("scopegate_upstream_duration_seconds", "", ["upstream"],
                                   buckets=LATENCY_BUCKETS, registry=reference)  # fmt: skip
    for index, (route, method, status, seconds) in enumerate(seen):
        if index == flush_after:
            metrics.flush()
        metrics.answered(route, method, status, seconds)
        label = method if method in ("GET", "DELETE") else "OTHER"
        requests.labels(route=route, method=label, code=str(status)).inc()
        durations.labels(route=route).observe(seconds)
    for seconds in upstream:
        metrics.upstream_answered("contacts", seconds)
        upstream_durations.labels(upstream="contacts").observe(seconds)
    names = ("scopegate_requests", "scopegate_request_duration", "scopegate_upstream_duration")
    ours = answered_samples(samples(metrics.registry), names)
    theirs = answered_samples(samples(reference), names)
    # Sums are added in another order: equal to the last few bits.
    assert {s[:2] for s in ours} == {s[:2] for s in theirs}
    values = {s[:2]: s[2] for s in theirs}
    for name, labels, value in ours:
        assert abs(value - values[(name, labels)]) <= 1e-9 * max(1.0, abs(value))


def test_a_scrape_sees_every_request_answered_before_it() -> None:
    metrics = Metrics(CollectorRegistry())
    for _ in range(3):
        metrics.answered("list-contacts", "GET", 200, 0.002)
    metrics.denied("list-contacts", Reason.INSUFFICIENT_SCOPE)
    read = metrics.registry.get_sample_value
    labels = {"route": "list-contacts", "method": "GET", "code": "200"}
    assert read("scopegate_requests_total", labels) == 3
    assert read("scopegate_request_duration_seconds_bucket",
                {"route": "list-contacts", "le": "0.0025"}) == 3  # fmt: skip
    denial = {"route": "list-contacts", "reason": "insufficient_scope"}
    assert read("scopegate_denials_total", denial) == 1
    metrics.answered("list-contacts", "GET", 200, 0.002)
    assert read("scopegate_requests_total", labels) == 4  # counted once, not again per scrape
    assert read("scopegate_denials_total", denial) == 1


def test_odd_methods_share_one_label_and_one_tally() -> None:
    """Any method token is valid HTTP; a client inventing new ones adds no label set."""
    metrics = Metrics(CollectorRegistry())
    for index in range(500):
        metrics.answered("unmatched", f"X-{index}", 405, 0.0)
    found = [s for s in samples(metrics.registry) if s[0] == "scopegate_requests_total"]
    assert found == [
        ("scopegate_requests_total", (("code", "405"), ("method", "OTHER"), ("route", "unmatched")),
         500.0)
    ]  # fmt: skip
    assert len(metrics._answered) == 1
