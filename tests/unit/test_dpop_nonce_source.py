"""The DPoP nonces scopegate issues (RFC 9449 §9): good in their window and the next, not after,
not from another key, not forged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scopegate.pipeline.dpop_nonce import INTERVAL, NONCE_KEY_ENV, NonceSource

KEY = bytes(range(32))
NOW = 1_800_000_000.0


def test_a_nonce_is_accepted_in_its_window_and_the_next_only() -> None:
    nonces = NonceSource(KEY)
    start = (NOW // INTERVAL) * INTERVAL
    nonce = nonces.current(start)
    assert nonces.accepts(nonce, start)
    assert nonces.accepts(nonce, start + INTERVAL - 0.001)
    assert nonces.accepts(nonce, start + 2 * INTERVAL - 0.001)
    assert not nonces.accepts(nonce, start + 2 * INTERVAL)
    assert not nonces.accepts(nonce, start - 0.001)  # not before it was issued


def test_another_key_does_not_accept_it() -> None:
    nonce = NonceSource(KEY).current(NOW)
    assert not NonceSource(bytes(32)).accepts(nonce, NOW)


def test_processes_given_one_key_accept_each_others_nonces() -> None:
    environ = {NONCE_KEY_ENV: KEY.hex()}
    one, other = NonceSource.from_environment(environ), NonceSource.from_environment(environ)
    assert other.accepts(one.current(NOW), NOW)


def test_without_a_key_each_process_draws_its_own() -> None:
    for environ in ({}, {NONCE_KEY_ENV: "not hex"}):
        one, other = NonceSource.from_environment(environ), NonceSource.from_environment(environ)
        assert not other.accepts(one.current(NOW), NOW)


@given(st.text(max_size=64))
def test_no_made_up_text_is_accepted(text: str) -> None:
    nonces = NonceSource(KEY)
    assert nonces.accepts(text, NOW) == (
        text in {nonces.current(NOW), nonces.current(NOW - INTERVAL)}
    )
