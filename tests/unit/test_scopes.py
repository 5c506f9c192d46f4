"""Scope claims and scope rules (SPEC §3.3): whole, case-sensitive strings, OR-of-AND."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from scopegate.config.model import ScopeRule
from scopegate.pipeline.scopes import granted_scopes, missing_scopes, read_claim, require
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import granted_sets, scope_rules


@pytest.mark.parametrize(
    ("claims", "names", "expected"),
    [
        pytest.param({"scope": "a b  c"}, ["scope"], {"a", "b", "c"}, id="space-separated string"),
        pytest.param({"scp": ["a", "b"]}, ["scp"], {"a", "b"}, id="array taken as is"),
        pytest.param({"scope": "a", "scp": ["b"]}, ["scope", "scp"], {"a", "b"}, id="claims merged"),
        pytest.param({"realm_access": {"roles": ["admin"]}}, ["realm_access.roles"], {"admin"},
                     id="dotted name reads a nested claim"),
        pytest.param({"a.b": "x"}, ["a.b"], {"x"}, id="a claim whose name has a dot"),
        pytest.param({"scope": "a\tb"}, ["scope"], {"a\tb"}, id="only the space character splits"),
        pytest.param({"scp": ["a", 1, ["b"], None, {"c": 1}, True]}, ["scp"], {"a"},
                     id="array items that are not strings grant nothing"),
        pytest.param({"scope": 42}, ["scope"], set(), id="a number grants nothing"),
        pytest.param({"permissions": ["x"]}, ["scope"], set(), id="unlisted claims are not read"),
        pytest.param({}, ["scope", "scp"], set(), id="no claim, no scope"),
    ],
)  # fmt: skip
def test_granted_scopes(claims: dict[str, Any], names: list[str], expected: set[str]) -> None:
    assert granted_scopes(claims, names) == expected


def test_read_claim_of_a_missing_path_is_none() -> None:
    assert read_claim({"a": {"b": 1}}, "a.c") is None
    assert read_claim({"a": "not a mapping"}, "a.b") is None


@pytest.mark.parametrize(
    "granted",
    [
        pytest.param({"read:contacts_all"}, id="longer scope with the same prefix"),
        pytest.param({"READ:contacts"}, id="other case"),
        pytest.param({"read"}, id="prefix of the scope"),
        pytest.param({"read:contacts "}, id="trailing space"),
        pytest.param({"read:contacts\u200b"}, id="zero-width space"),
        pytest.param({"reаd:contacts"}, id="Cyrillic look-alike"),
    ],
)
def test_look_alike_scopes_never_satisfy(granted: set[str]) -> None:
    with pytest.raises(Denied) as caught:
        require(ScopeRule((frozenset({"read:contacts"}),)), frozenset(granted))
    assert caught.value.reason is Reason.INSUFFICIENT_SCOPE
    assert caught.value.scope == "read:contacts"


def test_the_403_names_the_alternative_missing_fewest() -> None:
    rule = ScopeRule((frozenset({"a", "b", "c"}), frozenset({"d", "e"})))
    with pytest.raises(Denied) as caught:
        require(rule, frozenset({"a", "b", "d"}))
    assert caught.value.scope == "a b c"  # misses one, where the other misses one too: first wins
    with pytest.raises(Denied) as caught:
        require(rule, frozenset({"d"}))
    assert caught.value.scope == "d e"


def test_no_scopes_needed_passes_anything() -> None:
    require(ScopeRule(), frozenset())


@settings(max_examples=300, deadline=None)
@given(scope_rules(), granted_sets)
def test_require_passes_exactly_when_some_alternative_is_granted(
    rule: ScopeRule, granted: frozenset[str]
) -> None:
    expected = any(alternative <= granted for alternative in rule.alternatives)
    try:
        require(rule, granted)
    except Denied as denied:
        assert not expected
        assert denied.scope is not None
        assert set(denied.scope.split(" ")) in [set(a) for a in rule.alternatives]
        assert missing_scopes(rule, granted)
    else:
        assert expected
