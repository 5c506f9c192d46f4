"""The verified-token cache: a hit until `exp`, and only under the same key-set generation."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.keys.token_cache import VerifiedTokens, cache_key
from scopegate.pipeline import Principal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEYS_USABLE = math.inf  # a key set that never lapses, where the test is not about max_stale


def principal(exp: float | None = 1100) -> Principal:
    return Principal({"sub": "u"}, frozenset({"read"}), "https://id.example.com/", exp)


def test_a_verified_token_is_remembered_until_its_exp() -> None:
    clock = Clock()
    cache = VerifiedTokens[Principal](10, clock=clock)
    cache.put(cache_key("t", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("t", None), generation=1) == principal()
    clock.now = 1100
    assert cache.get(cache_key("t", None), generation=1) is None
    assert len(cache) == 0


def test_a_new_key_set_generation_forgets_every_verdict() -> None:
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key("t", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("t", None), generation=2) is None
    assert cache.get(cache_key("t", None), generation=1) is None  # the stale entry was dropped


def test_the_audience_is_part_of_the_key() -> None:
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key("t", "https://a"), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("t", "https://b"), generation=1) is None
    assert cache.get(cache_key("t", None), generation=1) is None


def test_tokens_without_exp_are_never_cached() -> None:
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key("t", None), principal(None), generation=1, usable_for=KEYS_USABLE)
    assert len(cache) == 0


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedTokens[Principal](3, clock=Clock())
    for token in "abc":
        cache.put(cache_key(token, None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("a", None), generation=1) is not None  # "b" is now the least recent
    cache.put(cache_key("d", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert len(cache) == 3
    assert cache.get(cache_key("b", None), generation=1) is None
    assert cache.get(cache_key("a", None), generation=1) is not None


def test_size_zero_disables_the_cache() -> None:
    cache = VerifiedTokens[Principal](0, clock=Clock())
    assert not cache.enabled and VerifiedTokens(1).enabled
    cache.put(cache_key("t", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("t", None), generation=1) is None


def test_the_cache_keeps_no_token_text() -> None:
    """Only a digest of each token is kept: a heap dump holds no usable credential."""
    import gc

    token = ".".join(["eyJhbGciOiJSUzI1NiJ9", "x" * 300, str(id(Clock))])  # built, not a constant
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key(token, None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert not any(
        isinstance(holder, tuple) and token in holder for holder in gc.get_referrers(token)
    )
    assert cache.get(cache_key(token, None), generation=1) == principal()
    assert cache.get(cache_key(token[:-1] + "X", None), generation=1) is None


def test_no_token_and_audience_pair_passes_for_another() -> None:
    """The audience is hashed after the token: "ab" for no audience is not "a" for "b"."""
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key("ab", None), principal(), generation=1, usable_for=KEYS_USABLE)
    cache.put(cache_key("x", "yz"), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("a", "b"), generation=1) is None
    assert cache.get(cache_key("xy", "z"), generation=1) is None
    assert cache.get(cache_key("xyz", None), generation=1) is None
    assert cache.get(cache_key("ab", None), generation=1) is not None


def test_a_verdict_reached_under_a_replaced_key_set_is_not_remembered() -> None:
    """Keys that changed while a token was being verified make its verdict stale."""
    cache = VerifiedTokens[Principal](10, clock=Clock())
    cache.put(cache_key("a", None), principal(), generation=1, usable_for=KEYS_USABLE)
    cache.put(cache_key("b", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("a", None), generation=2) is None
    assert len(cache) == 0  # the new generation emptied the cache at once
    # verification began before the change
    cache.put(cache_key("c", None), principal(), generation=1, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("c", None), generation=2) is None
    cache.put(cache_key("c", None), principal(), generation=2, usable_for=KEYS_USABLE)
    assert cache.get(cache_key("c", None), generation=2) == principal()


@settings(max_examples=500, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=4),
    steps=st.lists(st.tuples(st.sampled_from(["put", "get"]), st.sampled_from("abcdef"))),
)
def test_eviction_follows_a_model_lru(size: int, steps: list[tuple[str, str]]) -> None:
    """Against a list kept in order of use: the same hits, and the same tokens kept."""
    cache = VerifiedTokens[Principal](size, clock=Clock())
    used: list[str] = []  # least recently used first
    for action, token in steps:
        key = cache_key(token, None)
        if action == "put":
            cache.put(key, principal(), generation=1, usable_for=KEYS_USABLE)
            used = [t for t in used if t != token][-(size - 1) :] if size > 1 else []
            used.append(token)
        else:
            hit = cache.get(key, generation=1) is not None
            assert hit == (token in used)
            if hit:
                used.remove(token)
                used.append(token)
        assert len(cache) == len(used)
    assert all(cache.get(cache_key(token, None), generation=1) for token in used)


def test_a_verdict_is_never_returned_once_its_keys_stop_being_usable() -> None:
    """An issuer unreachable for longer than max_stale gets 503 on the uncached path: its cached
    verdicts go at the same moment, however far their tokens' exp is."""
    clock = Clock()
    cache = VerifiedTokens[Principal](10, clock=clock)
    cache.put(cache_key("t", None), principal(exp=5000), generation=1, usable_for=50)
    clock.now = 1049.9
    assert cache.get(cache_key("t", None), generation=1) == principal(exp=5000)
    clock.now = 1050
    assert cache.get(cache_key("t", None), generation=1) is None
    assert len(cache) == 0


def test_a_verdict_whose_keys_lapsed_during_verification_is_not_remembered() -> None:
    cache = VerifiedTokens[Principal](10, clock=Clock())
    for lapsed in (0.0, -1.0, -math.inf):
        cache.put(cache_key("t", None), principal(), generation=1, usable_for=lapsed)
    assert len(cache) == 0


def test_verdicts_of_issuers_with_usable_keys_come_back_after_another_issuer_lapsed() -> None:
    """One issuer's lapse empties the cache once; the others' tokens are verified again and
    cached as before, while the lapsed issuer can add nothing."""
    clock = Clock()
    cache = VerifiedTokens[Principal](10, clock=clock)
    cache.put(cache_key("down", None), principal(), generation=1, usable_for=10)
    cache.put(cache_key("up", None), principal(), generation=1, usable_for=KEYS_USABLE)
    clock.now += 10
    assert cache.get(cache_key("up", None), generation=1) is None  # verified again, once
    cache.put(cache_key("up", None), principal(), generation=1, usable_for=KEYS_USABLE)
    clock.now += 50
    assert cache.get(cache_key("up", None), generation=1) == principal()
    assert cache.get(cache_key("down", None), generation=1) is None


def test_a_new_key_set_brings_its_own_deadline() -> None:
    """A good fetch starts a generation whose keys are usable anew: the old deadline is gone."""
    clock = Clock()
    cache = VerifiedTokens[Principal](10, clock=clock)
    cache.put(cache_key("t", None), principal(), generation=1, usable_for=10)
    assert cache.get(cache_key("t", None), generation=2) is None
    cache.put(cache_key("t", None), principal(), generation=2, usable_for=60)
    clock.now += 30
    assert cache.get(cache_key("t", None), generation=2) == principal()


_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.floats(0, 40)),
        st.tuples(st.just("put"), st.sampled_from("abcd"), st.floats(-5, 100)),
        st.tuples(st.just("get"), st.sampled_from("abcd")),
    ),
    max_size=40,
)


@settings(max_examples=500, deadline=None)
@given(steps=_STEPS)
def test_no_hit_outlives_the_keys_or_the_exp_it_was_stored_with(
    steps: list[tuple[Any, ...]],
) -> None:
    """Whatever the order of verdicts, waits and lookups, a hit is always for an entry stored
    less than `usable_for` ago and before its token's exp; a hit only ever follows a put."""
    clock = Clock()
    cache = VerifiedTokens[Principal](3, clock=clock)
    stored: dict[str, float] = {}  # token -> the moment its keys stop vouching for it
    for step in steps:
        if step[0] == "wait":
            clock.now += step[1]
        elif step[0] == "put":
            _, token, usable_for = step
            cache.put(cache_key(token, None), principal(exp=1100), generation=1,
                      usable_for=usable_for)  # fmt: skip
            if usable_for > 0:  # else not stored: an earlier verdict stands as it was
                stored[token] = clock.now + usable_for
        else:
            hit = cache.get(cache_key(step[1], None), generation=1)
            if hit is not None:
                assert clock.now < stored[step[1]]
                assert clock.now < 1100
