"""The framing the gateway refuses before anything else (SPEC §3.1): `Host` as `host[:port]`,
and transfer codings other than `chunked` alone. End-to-end counterparts:
tests/e2e/test_framing.py and the `headers` and `smuggling` families of tests/attacks/."""

from __future__ import annotations

import ipaddress
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.reasons import Denied, Reason
from scopegate.wire.framing import check_framing, valid_host

Headers = list[tuple[bytes, bytes]]


def check(headers: Headers, version: tuple[int, int] = (1, 1)) -> None:
    check_framing(version, "POST", "/x", headers, 16384)


def refusal(headers: Headers, version: tuple[int, int] = (1, 1)) -> Denied:
    with pytest.raises(Denied) as caught:
        check(headers, version)
    return caught.value


_NAME_CHARACTERS = string.ascii_letters + string.digits + "-_~"
# What may appear somewhere in a valid `host[:port]`; every other character is a bad one.
_HOST_CHARACTERS = frozenset(_NAME_CHARACTERS + ".:[]")


@st.composite
def names(draw: st.DrawFn) -> str:
    """A reg-name: dot-separated labels, sometimes with the final dot of an absolute name."""
    labels = draw(st.lists(st.text(_NAME_CHARACTERS, min_size=1, max_size=12), min_size=1,
                           max_size=4))  # fmt: skip
    return ".".join(labels) + draw(st.sampled_from(["", "."]))


@st.composite
def ports(draw: st.DrawFn) -> str:
    """`:port`, 1 to 5 digits (leading zeros included) worth at most 65535, or nothing."""
    port = draw(st.none() | st.integers(0, 65535))
    if port is None:
        return ""
    digits = str(port)
    return ":" + digits.zfill(draw(st.integers(len(digits), 5)))


@st.composite
def hosts(draw: st.DrawFn) -> str:
    """A `host[:port]` the gateway accepts: a name, an IPv4 address or an `[IPv6]` literal."""
    host = draw(
        names()
        | st.ip_addresses(v=4).map(str)
        | st.ip_addresses(v=6).map(lambda address: f"[{address}]")
        | st.ip_addresses(v=6).map(lambda address: f"[{address.exploded}]")
    )
    return host + draw(ports())


_BAD_CHARACTERS = st.characters(codec="latin-1").filter(lambda c: c not in _HOST_CHARACTERS)


class TestHost:
    @settings(max_examples=500)
    @given(host=hosts())
    def test_every_valid_host_is_accepted(self, host: str) -> None:
        assert valid_host(host.encode("latin-1"))
        check([(b"Host", host.encode("latin-1"))])

    @settings(max_examples=500)
    @given(host=hosts(), bad=_BAD_CHARACTERS, at=st.integers(min_value=0))
    def test_a_valid_host_with_any_other_character_inserted_is_refused(
        self, host: str, bad: str, at: int
    ) -> None:
        """Spaces, commas, `@`, `/`, `%`, `;`, control bytes, non-ASCII...: anywhere in a name,
        a literal or a port, the request gets 400 and no challenge."""
        at %= len(host) + 1
        spoiled = (host[:at] + bad + host[at:]).encode("latin-1")
        if spoiled.strip(b" \t") == host.encode("latin-1"):
            return  # whitespace around the value is not part of it
        assert not valid_host(spoiled)
        denied = refusal([(b"Host", spoiled)])
        assert (denied.reason, denied.status, denied.challenge) == (
            Reason.INVALID_REQUEST, 400, False
        )  # fmt: skip

    @settings(max_examples=500)
    @given(text=st.text("0123456789abcdefABCDEF:.", max_size=45), port=ports())
    def test_an_ip_literal_is_valid_exactly_when_it_is_an_ipv6_address(
        self, text: str, port: str
    ) -> None:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            expected = False
        else:
            expected = True
        assert valid_host(f"[{text}]{port}".encode()) is expected

    @given(port=st.integers(0, 999_999))
    def test_a_port_is_valid_up_to_65535(self, port: int) -> None:
        assert valid_host(f"api.example:{port}".encode()) is (port <= 65535)

    @pytest.mark.parametrize(
        "host",
        [
            pytest.param(b"", id="empty"),
            pytest.param(b" ", id="only whitespace"),
            pytest.param(b"a b", id="a space"),
            pytest.param(b"a,b", id="a list"),
            pytest.param(b"user@a", id="userinfo"),
            pytest.param(b"user:pass@a", id="userinfo with a password"),
            pytest.param(b"a/b", id="a path"),
            pytest.param(b"a?b", id="a query"),
            pytest.param(b"a#b", id="a fragment"),
            pytest.param(b"a:", id="an empty port"),
            pytest.param(b"a:65536", id="a port out of range"),
            pytest.param(b"a:123456", id="a port of six digits"),
            pytest.param(b"a:8o", id="a port with a letter"),
            pytest.param(b"a:-1", id="a negative port"),
            pytest.param(b"a:80:80", id="two ports"),
            pytest.param(b"a..b", id="an empty label"),
            pytest.param(b".a", id="a leading dot"),
            pytest.param(b"evil%2eexample", id="a percent-escape"),
            pytest.param(b"a;b", id="a sub-delim"),
            pytest.param(b"a\x00b", id="NUL"),
            pytest.param(b"a\x7fb", id="DEL"),
            pytest.param(b"caf\xe9", id="non-ASCII"),
            pytest.param(b"::1", id="an IPv6 address without brackets"),
            pytest.param(b"[::1", id="an unclosed literal"),
            pytest.param(b"[::g]", id="a literal that is not IPv6"),
            pytest.param(b"[1.2.3.4]", id="an IPv4 address in brackets"),
            pytest.param(b"[fe80::1%25eth0]", id="a zone id"),
            pytest.param(b"[v1.x]", id="IPvFuture"),
            pytest.param(b"[::1]x", id="text after a literal"),
            pytest.param(b"[::1]:", id="a literal with an empty port"),
        ],
    )
    def test_invalid_hosts_are_refused(self, host: bytes) -> None:
        assert not valid_host(host)
        assert refusal([(b"Host", host)]).status == 400

    @pytest.mark.parametrize(
        "host",
        [b"localhost", b"api.example.com.", b"API.Example.COM:8443", b"127.0.0.1:80", b"a:1",
         b"[::1]", b"[2001:db8::1]:443", b"[::ffff:192.0.2.1]", b"xn--caf-dma.example",
         b"svc_name.internal:08080", b" padded.example\t"],
    )  # fmt: skip
    def test_usual_hosts_are_accepted(self, host: bytes) -> None:
        assert valid_host(host)

    def test_http_1_1_needs_a_host(self) -> None:
        denied = refusal([(b"Content-Length", b"0")])
        assert (denied.reason, denied.status, denied.challenge) == (
            Reason.INVALID_REQUEST, 400, False
        )  # fmt: skip

    def test_http_1_0_may_go_without_host_but_not_with_a_bad_one(self) -> None:
        check([(b"Content-Length", b"0")], version=(1, 0))
        assert refusal([(b"Host", b"a b")], version=(1, 0)).status == 400

    def test_the_header_name_is_matched_in_any_case(self) -> None:
        assert refusal([(b"hOST", b"a,b")]).status == 400


_CODINGS = st.sampled_from(["gzip", "x-gzip", "deflate", "compress", "br", "identity", "zstd"])


def spelled(coding: str) -> st.SearchStrategy[str]:
    """`coding` in any case, with optional whitespace around it."""

    def spell(parts: tuple[str, list[bool], str]) -> str:
        before, upper, after = parts
        cased = "".join(c.upper() if up else c for c, up in zip(coding, upper, strict=True))
        return before + cased + after

    return st.tuples(
        st.sampled_from(["", " ", "\t"]),
        st.lists(st.booleans(), min_size=len(coding), max_size=len(coding)),
        st.sampled_from(["", " "]),
    ).map(spell)


@st.composite
def codings_before_chunked(draw: st.DrawFn) -> Headers:
    """Transfer-Encoding header lines whose codings end in `chunked` but are not `chunked`
    alone: one coding or more first, in one header or spread over several."""
    codings = [*draw(st.lists(_CODINGS, min_size=1, max_size=3)), "chunked"]
    cuts = sorted(draw(st.sets(st.integers(1, len(codings) - 1))))
    groups = [codings[a:b] for a, b in zip([0, *cuts], [*cuts, len(codings)], strict=True)]
    return [
        (b"Transfer-Encoding", ",".join(draw(spelled(c)) for c in group).encode())
        for group in groups
    ]


class TestTransferCoding:
    @given(value=spelled("chunked"))
    def test_chunked_alone_is_accepted_in_any_case(self, value: str) -> None:
        check([(b"Host", b"a"), (b"Transfer-Encoding", value.encode())])

    @settings(max_examples=300)
    @given(headers=codings_before_chunked())
    def test_any_other_coding_before_chunked_gets_501(self, headers: Headers) -> None:
        """`gzip, chunked` would otherwise pass with its gzip silently dropped: 501, counted as
        `invalid_request`, no challenge (the gateway closes the connection for it)."""
        denied = refusal([(b"Host", b"a"), *headers])
        assert (denied.reason, denied.status, denied.challenge) == (
            Reason.INVALID_REQUEST, 501, False
        )  # fmt: skip

    @pytest.mark.parametrize(
        "value", [b"gzip", b"chunked, gzip", b"chunked;q=1", b"xchunked", b"gzip, chunked, br"]
    )
    def test_a_final_coding_other_than_chunked_stays_400(self, value: bytes) -> None:
        assert refusal([(b"Host", b"a"), (b"Transfer-Encoding", value)]).status == 400

    def test_transfer_encoding_on_http_1_0_stays_400(self) -> None:
        denied = refusal([(b"Transfer-Encoding", b"gzip, chunked")], version=(1, 0))
        assert denied.status == 400
