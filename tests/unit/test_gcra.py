"""GCRA and the rules' bookkeeping (pipeline/rate_limits.py, ratelimit/memory.py): the promises
SPEC §6.5 makes, held for any sequence of request times."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate.config.model import RateLimitRule, RateLimits
from scopegate.pipeline import Principal
from scopegate.pipeline.rate_limits import (
    Counted,
    Outcome,
    gcra,
    rate_limit_headers,
    refusal,
    rules_for,
)
from scopegate.ratelimit.limiter import Limiter
from scopegate.ratelimit.memory import MemoryStore
from scopegate.reasons import Denied, Reason

limits = st.integers(min_value=1, max_value=50)
windows = st.sampled_from([1.0, 2.5, 60.0, 3600.0])
# Request times as gaps between requests: bursts (0), and pauses up to a few windows.
gaps = st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=80)


def run(limit: int, window: float, times: list[float]) -> list[bool]:
    tat: float | None = None
    allowed = []
    for now in times:
        outcome = gcra(tat, now, limit, window)
        if outcome.allowed:
            tat = outcome.tat
        allowed.append(outcome.allowed)
    return allowed


def cumulative(steps: list[float]) -> list[float]:
    times, now = [], 1000.0
    for step in steps:
        now += step
        times.append(now)
    return times


@given(limits, windows)
def test_a_quiet_key_may_spend_its_whole_limit_at_once_and_no_more(
    limit: int, window: float
) -> None:
    assert run(limit, window, [5.0] * (limit + 3)) == [True] * limit + [False] * 3


@given(limits, windows, gaps)
def test_no_span_of_time_lets_through_more_than_the_limit_and_what_the_rate_earned(
    limit: int, window: float, steps: list[float]
) -> None:
    """No fixed-window edge: in any span [a, b] of request times, at most `limit` plus the
    requests the rate `limit / window` earns in b - a are allowed."""
    times = cumulative(steps)
    allowed = [t for t, ok in zip(times, run(limit, window, times), strict=True) if ok]
    interval = window / limit
    for i, start in enumerate(allowed):
        for j in range(i, len(allowed)):
            assert j - i + 1 <= limit + (allowed[j] - start) / interval + 1e-6


@given(limits, windows, st.floats(min_value=0.05, max_value=0.5))
def test_under_steady_overload_the_rate_is_the_limit_per_window(
    limit: int, window: float, fraction_of_interval: float
) -> None:
    """Requests faster than the rate, for four windows: the burst, then one per interval."""
    interval = window / limit
    spacing = interval * fraction_of_interval
    times = [1000.0 + k * spacing for k in range(int(4 * window / spacing) + 1)]
    passed = sum(run(limit, window, times))
    earned = limit + (times[-1] - times[0]) / interval
    assert min(len(times), earned - 2) <= passed <= earned + 1e-6


@given(limits, windows, gaps)
def test_remaining_and_wait_say_exactly_when_the_next_request_passes(
    limit: int, window: float, steps: list[float]
) -> None:
    tat: float | None = None
    for now in cumulative(steps):
        outcome = gcra(tat, now, limit, window)
        after = outcome.tat if outcome.allowed else tat
        if outcome.remaining > 0:
            assert gcra(after, now, limit, window).allowed
        else:
            assert outcome.wait > 0
            assert gcra(after, now + outcome.wait + 1e-6, limit, window).allowed
            assert not gcra(after, now + outcome.wait - 1e-3, limit, window).allowed
        if outcome.allowed:
            tat = outcome.tat


def rule(name: str, key: str = "client", limit: int = 2, window: float = 60.0,
         routes: frozenset[str] | None = None) -> RateLimitRule:  # fmt: skip
    return RateLimitRule(name, key, limit, window, routes)  # type: ignore[arg-type]


def principal(**claims: str) -> Principal:
    return Principal(claims, frozenset(), "https://idp.example/")


def test_each_rule_counts_by_its_own_key_and_only_what_carries_one() -> None:
    rules = rules_for(
        "r",
        [rule("c"), rule("s", "subject"), rule("i", "ip"), rule("x", routes=frozenset({"other"}))],
    )
    assert [c.key for c in rules.counting(None, "10.0.0.1")] == ["i:ip:10.0.0.1"]
    keys = [c.key for c in rules.counting(principal(sub="ann", azp="app"), "10.0.0.1")]
    assert keys == ["i:ip:10.0.0.1", "c:client:app", "s:subject:ann"]
    # client_id when there is no azp; a token without sub or client is not counted by them.
    assert [c.key for c in rules.counting(principal(client_id="cli"), None)] == ["c:client:cli"]
    assert rules.counting(principal(), None) == []
    assert rules_for("unnamed", [rule("x", routes=frozenset({"other"}))]).counting(None, "ip") == []


def test_headers_and_the_refusal_name_every_rule() -> None:
    counted = [
        Counted(rule("a", limit=10, window=60), "k"),
        Counted(rule("b", limit=1, window=0.5), "k"),
    ]
    fresh = [gcra(None, 0.0, 10, 60.0), gcra(None, 0.0, 1, 0.5)]
    assert rate_limit_headers(counted, fresh) == [
        (b"RateLimit-Policy", b'"a";q=10;w=60, "b";q=1;w=0.5'),
        (b"RateLimit", b'"a";r=9;t=0, "b";r=0;t=1'),
    ]
    assert refusal(counted, fresh) is None
    over = [fresh[0], gcra(fresh[1].tat, 0.1, 1, 0.5)]
    denied = refusal(counted, over)
    assert denied is not None and denied.reason is Reason.RATE_LIMITED
    assert denied.retry_after == 1 and "(b)" in denied.detail


def test_the_memory_store_moves_no_count_when_one_rule_refuses() -> None:
    store = MemoryStore(clock=lambda: 100.0)
    tight, loose = rule("tight", limit=1), rule("loose", limit=5)
    both = [Counted(tight, "t"), Counted(loose, "l")]
    assert [o.allowed for o in store.spend_now(both)] == [True, True]
    assert [o.allowed for o in store.spend_now(both)] == [False, True]
    # The refused request spent nothing of `loose`: 3 remain after this one, not 2.
    assert store.spend_now([Counted(loose, "l")])[0].remaining == 3


def test_the_memory_store_keeps_at_most_max_keys_dropping_the_coldest() -> None:
    store = MemoryStore(max_keys=3, clock=lambda: 0.0)
    one = rule("one", limit=1)
    for name in "abcd":
        asyncio.run(store.spend([Counted(one, name)]))
    assert len(store) == 3
    assert store.spend_now([Counted(one, "a")])[0].allowed  # dropped: starts afresh
    assert not store.spend_now([Counted(one, "d")])[0].allowed


@pytest.mark.parametrize("window", [60.0, 0.25])
def test_the_policy_window_is_written_as_seconds(window: float) -> None:
    headers = dict(
        rate_limit_headers([Counted(rule("p", window=window), "k")], [gcra(None, 0, 2, window)])
    )
    assert headers[b"RateLimit-Policy"] == f'"p";q=2;w={window:g}'.encode()


class FailingStore:
    """A store whose every call fails, as a Redis that went away."""

    def __init__(self) -> None:
        self.calls = 0

    async def spend(self, counted: Sequence[Counted]) -> list[Outcome]:
        self.calls += 1
        raise ConnectionRefusedError("no Redis here")

    async def close(self) -> None:
        pass


def test_a_failing_store_is_counted_every_time_and_logged_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    failures = []
    limits = RateLimits(rules=(rule("r"),), on_store_error="allow")
    limiter = Limiter(limits, FailingStore(), on_store_error=lambda: failures.append(1),
                      clock=lambda: now[0])  # fmt: skip
    counted = [Counted(rule("r"), "k")]
    with caplog.at_level(logging.WARNING, logger="scopegate.ratelimit"):
        for step in range(6):
            now[0] = step * 10.0  # every 10 s: logged at 0 and 30 only
            assert asyncio.run(limiter.admit(counted)) == []  # allowed, uncounted
    assert len(failures) == 6
    logged = [r for r in caplog.records if r.name == "scopegate.ratelimit"]
    assert len(logged) == 2
    assert "allowing uncounted" in logged[0].getMessage()


def test_a_failing_store_with_deny_answers_503_with_retry_after() -> None:
    limits = RateLimits(rules=(rule("r"),), on_store_error="deny")
    limiter = Limiter(limits, FailingStore(), on_store_error=lambda: None)
    with pytest.raises(Denied) as denied:
        asyncio.run(limiter.admit([Counted(rule("r"), "k")]))
    assert denied.value.reason is Reason.RATE_LIMIT_UNAVAILABLE
    assert denied.value.status == 503 and denied.value.retry_after == 1
