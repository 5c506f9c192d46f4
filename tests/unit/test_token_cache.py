"""The verified-token cache: a hit until `exp`, and only under the same key-set generation."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.pipeline import Principal
from scopegate.pipeline.token_cache import VerifiedTokens, cache_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal(exp: float | None = 1100) -> Principal:
    return Principal({"sub": "u"}, frozenset({"read"}), "https://id.example.com/", exp)


def test_a_verified_token_is_remembered_until_its_exp() -> None:
    clock = Clock()
    cache = VerifiedTokens(10, clock=clock)
    cache.put(cache_key("t", None), principal(), generation=1)
    assert cache.get(cache_key("t", None), generation=1) == principal()
    clock.now = 1100
    assert cache.get(cache_key("t", None), generation=1) is None
    assert len(cache) == 0


def test_a_new_key_set_generation_forgets_every_verdict() -> None:
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key("t", None), principal(), generation=1)
    assert cache.get(cache_key("t", None), generation=2) is None
    assert cache.get(cache_key("t", None), generation=1) is None  # the stale entry was dropped


def test_the_audience_is_part_of_the_key() -> None:
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key("t", "https://a"), principal(), generation=1)
    assert cache.get(cache_key("t", "https://b"), generation=1) is None
    assert cache.get(cache_key("t", None), generation=1) is None


def test_tokens_without_exp_are_never_cached() -> None:
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key("t", None), principal(None), generation=1)
    assert len(cache) == 0


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    cache = VerifiedTokens(3, clock=Clock())
    for token in "abc":
        cache.put(cache_key(token, None), principal(), generation=1)
    assert cache.get(cache_key("a", None), generation=1) is not None  # "b" is now the least recent
    cache.put(cache_key("d", None), principal(), generation=1)
    assert len(cache) == 3
    assert cache.get(cache_key("b", None), generation=1) is None
    assert cache.get(cache_key("a", None), generation=1) is not None


def test_size_zero_disables_the_cache() -> None:
    cache = VerifiedTokens(0, clock=Clock())
    assert not cache.enabled and VerifiedTokens(1).enabled
    cache.put(cache_key("t", None), principal(), generation=1)
    assert cache.get(cache_key("t", None), generation=1) is None


def test_the_cache_keeps_no_token_text() -> None:
    """Only a digest of each token is kept: a heap dump holds no usable credential."""
    import gc

    token = ".".join(["eyJhbGciOiJSUzI1NiJ9", "x" * 300, str(id(Clock))])  # built, not a constant
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key(token, None), principal(), generation=1)
    assert not any(
        isinstance(holder, tuple) and token in holder for holder in gc.get_referrers(token)
    )
    assert cache.get(cache_key(token, None), generation=1) == principal()
    assert cache.get(cache_key(token[:-1] + "X", None), generation=1) is None


def test_no_token_and_audience_pair_passes_for_another() -> None:
    """The audience is hashed after the token: "ab" for no audience is not "a" for "b"."""
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key("ab", None), principal(), generation=1)
    cache.put(cache_key("x", "yz"), principal(), generation=1)
    assert cache.get(cache_key("a", "b"), generation=1) is None
    assert cache.get(cache_key("xy", "z"), generation=1) is None
    assert cache.get(cache_key("xyz", None), generation=1) is None
    assert cache.get(cache_key("ab", None), generation=1) is not None


def test_a_verdict_reached_under_a_replaced_key_set_is_not_remembered() -> None:
    """Keys that changed while a token was being verified make its verdict stale."""
    cache = VerifiedTokens(10, clock=Clock())
    cache.put(cache_key("a", None), principal(), generation=1)
    cache.put(cache_key("b", None), principal(), generation=1)
    assert cache.get(cache_key("a", None), generation=2) is None
    assert len(cache) == 0  # the new generation emptied the cache at once
    cache.put(
        cache_key("c", None), principal(), generation=1
    )  # verification began before the change
    assert cache.get(cache_key("c", None), generation=2) is None
    cache.put(cache_key("c", None), principal(), generation=2)
    assert cache.get(cache_key("c", None), generation=2) == principal()


@settings(max_examples=500, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=4),
    steps=st.lists(st.tuples(st.sampled_from(["put", "get"]), st.sampled_from("abcdef"))),
)
def test_eviction_follows_a_model_lru(size: int, steps: list[tuple[str, str]]) -> None:
    """Against a list kept in order of use: the same hits, and the same tokens kept."""
    cache = VerifiedTokens(size, clock=Clock())
    used: list[str] = []  # least recently used first
    for action, token in steps:
        key = cache_key(token, None)
        if action == "put":
            cache.put(key, principal(), generation=1)
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
