"""The exception tree: one root, leaves that keep what failed, safe through context managers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from scopegate import errors
from scopegate.config.errors import ConfigErrors
from scopegate.devtools.token_command import TokenRefused
from scopegate.pipeline.patterns import PatternError
from scopegate.reasons import Denied, Reason

LEAVES: list[errors.ScopegateError] = [
    errors.KeyFetchError("https://idp.example/jwks", "answer is not JSON"),
    errors.ClientGone("the client closed the connection"),
    errors.BodyStalled(2.5),
    errors.BodyTooLarge(1024),
    errors.UpstreamUnreachable("connection refused"),
    errors.UpstreamTimeout(30.0),
    errors.UpstreamClosed("the upstream closed the connection"),
    Denied(Reason.MISSING_TOKEN, "no token"),
    ConfigErrors([]),
    PatternError("the path is empty"),
    TokenRefused("the demo issuer refused"),
]


@pytest.mark.parametrize("error", LEAVES, ids=lambda e: type(e).__name__)
def test_every_exception_scopegate_raises_has_one_root(error: errors.ScopegateError) -> None:
    assert isinstance(error, errors.ScopegateError)


@pytest.mark.parametrize("error", LEAVES, ids=lambda e: type(e).__name__)
def test_every_exception_passes_through_a_context_manager_unchanged(
    error: errors.ScopegateError,
) -> None:
    """contextlib sets `__traceback__` on the way out; a frozen exception would raise TypeError."""

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        yield

    with pytest.raises(type(error)) as caught, around():
        raise error
    assert caught.value is error


def test_the_upstream_leaves_say_their_kind_status_and_a_client_safe_detail() -> None:
    cases = {
        errors.UpstreamUnreachable("[Errno 111] Connect call failed ('10.0.0.7', 8080)"): (
            "connect",
            502,
        ),
        errors.UpstreamTimeout(30.0): ("timeout", 504),
        errors.UpstreamClosed("the upstream's answer head exceeds 65536 bytes"): ("reset", 502),
    }
    for error, (kind, status) in cases.items():
        assert (error.kind, error.status) == (kind, status)
        assert "10.0.0.7" not in error.detail and "65536" not in error.detail


def test_the_leaves_keep_the_fact_that_failed() -> None:
    assert errors.UpstreamTimeout(30.0).seconds == 30.0
    assert "30 s" in str(errors.UpstreamTimeout(30.0))
    assert errors.BodyTooLarge(1024).limit == 1024
    assert str(errors.BodyTooLarge(1024)) == "the request body exceeds 1024 bytes"
    assert errors.BodyStalled(2.5).seconds == 2.5
    assert str(errors.BodyStalled(2.5, "the request's trailer section")) == (
        "the request's trailer section stopped arriving for 2.5 s"
    )
    assert errors.UpstreamUnreachable("refused").cause == "refused"
    fetch = errors.KeyFetchError("https://idp.example/jwks", "answer is not JSON")
    assert (fetch.url, fetch.reason) == ("https://idp.example/jwks", "answer is not JSON")
