"""Scope claims and scope rules (SPEC §2 `scope_claims` and `scopes`, §3 step 3): whole,
case-sensitive strings, OR-of-AND; end-to-end counterpart: tests/e2e/test_deny.py."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate.config.model import ScopeRule
from scopegate.pipeline.scopes import (
    closest_alternative,
    granted_scopes,
    missing_scopes,
    read_claim,
    require,
)
from scopegate.reasons import Denied, Reason
from tests.unit.strategies import granted_sets, scope_claims, scope_rules, scope_words

READ = ScopeRule((frozenset({"read:contacts"}),))


def rule(*alternatives: set[str]) -> ScopeRule:
    return ScopeRule(tuple(frozenset(alternative) for alternative in alternatives))


def refusal(scope_rule: ScopeRule, granted: set[str]) -> Denied:
    with pytest.raises(Denied) as caught:
        require(scope_rule, frozenset(granted))
    assert caught.value.reason is Reason.INSUFFICIENT_SCOPE
    return caught.value


class TestGrantedScopes:
    @pytest.mark.parametrize(
        ("claims", "names", "expected"),
        [
            pytest.param({"scope": "a b  c"}, ["scope"], {"a", "b", "c"}, id="space-separated string, runs of spaces"),
            pytest.param({"scope": " a "}, ["scope"], {"a"}, id="leading and trailing spaces grant nothing"),
            pytest.param({"scp": ["a", "b"]}, ["scp"], {"a", "b"}, id="array taken item by item"),
            pytest.param({"scp": ["a b"]}, ["scp"], {"a b"}, id="array items are not split"),
            pytest.param({"scp": ["a", ""]}, ["scp"], {"a"}, id="empty items grant nothing"),
            pytest.param({"scope": "a", "scp": ["b"]}, ["scope", "scp"], {"a", "b"}, id="claims merged"),
            pytest.param({"scope": "a b", "scp": ["b", "c"], "realm_access": {"roles": ["d"]}},
                         ["scope", "scp", "realm_access.roles"], {"a", "b", "c", "d"},
                         id="string, array and nested claims merged"),
            pytest.param({"realm_access": {"roles": ["admin"]}}, ["realm_access.roles"], {"admin"},
                         id="dotted name reads a nested claim"),
            pytest.param({"a": {"b": {"c": "x y"}}}, ["a.b.c"], {"x", "y"}, id="deeply nested string"),
            pytest.param({"a.b": "x", "a": {"b": "y"}}, ["a.b"], {"x"}, id="a claim named with a dot wins over nesting"),
            pytest.param({"a": [{"b": "x"}]}, ["a.b"], set(), id="no indexing into arrays"),
            pytest.param({"scope": "a\tb"}, ["scope"], {"a\tb"}, id="only the space character splits"),
            pytest.param({"scope": "a\u00a0b"}, ["scope"], {"a\u00a0b"}, id="a no-break space does not split"),
            pytest.param({"scp": ["a", 1, ["b"], None, {"c": 1}, True, 2.5]}, ["scp"], {"a"},
                         id="array items that are not strings grant nothing"),
            pytest.param({"scope": 42}, ["scope"], set(), id="a number grants nothing"),
            pytest.param({"scope": {"read": True}}, ["scope"], set(), id="an object grants nothing"),
            pytest.param({"scope": None}, ["scope"], set(), id="null grants nothing"),
            pytest.param({"permissions": ["x"]}, ["scope"], set(), id="unlisted claims are not read"),
            pytest.param({}, ["scope", "scp"], set(), id="no claim, no scope"),
        ],
    )  # fmt: skip
    def test_granted_scopes(
        self, claims: dict[str, Any], names: list[str], expected: set[str]
    ) -> None:
        """Strings split on spaces, arrays item by item, non-strings ignored, claims merged."""
        assert granted_scopes(claims, names) == expected

    def test_read_claim_of_a_missing_path_is_none(self) -> None:
        """An absent part, or a part that is not an object, reads as None."""
        assert read_claim({"a": {"b": 1}}, "a.c") is None
        assert read_claim({"a": "not a mapping"}, "a.b") is None
        assert read_claim({"a": {"b": 1}}, "a.b") == 1

    @settings(max_examples=200, deadline=None)
    @given(scope_claims())
    def test_granted_scopes_are_every_word_of_every_claim(
        self, case: tuple[dict[str, Any], tuple[str, ...], frozenset[str]]
    ) -> None:
        """Whatever mix of string, array (with junk) and nested claims, the grant is the union."""
        claims, names, expected = case
        assert granted_scopes(claims, names) == expected


class TestRequire:
    @pytest.mark.parametrize(
        "granted",
        [
            pytest.param({"read:contacts_all"}, id="longer scope with the same prefix"),
            pytest.param({"READ:contacts"}, id="other case"),
            pytest.param({"read"}, id="prefix of the scope"),
            pytest.param({"read:contacts "}, id="trailing space"),
            pytest.param({"read:contacts\u200b"}, id="zero-width space"),
            pytest.param({"re\u0430d:contacts"}, id="Cyrillic look-alike"),
            pytest.param({"read:contacts write:contacts"}, id="two scopes in one array item"),
            pytest.param(set(), id="no scope at all"),
        ],
    )
    def test_look_alike_scopes_never_satisfy(self, granted: set[str]) -> None:
        """Scopes compare as whole, case-sensitive strings."""
        assert refusal(READ, granted).scope == "read:contacts"

    @pytest.mark.parametrize(
        ("scope_rule", "granted"),
        [
            pytest.param(READ, {"read:contacts"}, id="the one scope"),
            pytest.param(READ, {"read:contacts", "admin"}, id="more than needed"),
            pytest.param(rule({"a", "b"}), {"a", "b"}, id="all of an AND"),
            pytest.param(rule({"a"}, {"b"}), {"b"}, id="any of an OR"),
            pytest.param(rule({"a", "b"}, {"c"}), {"c"}, id="one alternative of an OR-of-AND"),
            pytest.param(ScopeRule(), set(), id="a rule needing nothing"),
            pytest.param(rule({"a"}, set()), set(), id="an empty alternative needs nothing"),
        ],
    )
    def test_rules_met_pass(self, scope_rule: ScopeRule, granted: set[str]) -> None:
        """A rule passes when some alternative is wholly granted."""
        require(scope_rule, frozenset(granted))

    @pytest.mark.parametrize(
        ("scope_rule", "granted", "scope", "lacks"),
        [
            pytest.param(rule({"a", "b"}), {"a"}, "a b", "b", id="an AND half met names all of it"),
            pytest.param(rule({"a", "b", "c"}, {"d", "e"}), {"a", "b"}, "a b c", "c", id="the alternative missing fewest"),
            pytest.param(rule({"a", "b", "c"}, {"d", "e"}), {"d"}, "d e", "e", id="the other alternative when it misses fewer"),
            pytest.param(rule({"a", "b", "c"}, {"d", "e"}), {"a", "b", "d"}, "a b c", "c", id="on a tie the alternative written first"),
            pytest.param(rule({"d", "e"}, {"a", "b", "c"}), {"a", "b", "d"}, "d e", "e", id="written first, whichever it is"),
            pytest.param(rule({"x"}, {"y"}), set(), "x", "x", id="any-of with nothing granted: the first"),
        ],
    )  # fmt: skip
    def test_the_403_names_the_closest_alternative(
        self, scope_rule: ScopeRule, granted: set[str], scope: str, lacks: str
    ) -> None:
        """`scope` is the whole alternative that misses the fewest; the detail names what it
        lacks."""
        denied = refusal(scope_rule, granted)
        assert denied.scope == scope
        assert denied.detail == f"the token lacks the scope(s): {lacks}"
        assert denied.challenge

    def test_a_rule_without_alternatives_refuses_rather_than_crashes(self) -> None:
        """No alternative at all (never built by the loader) fails closed with a 403."""
        denied = refusal(ScopeRule(()), {"admin"})
        assert denied.scope is None
        assert closest_alternative(ScopeRule(()), frozenset()) is None


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(scope_rules(), granted_sets)
    def test_require_passes_exactly_when_some_alternative_is_granted(
        self, scope_rule: ScopeRule, granted: frozenset[str]
    ) -> None:
        """Pass iff some alternative ⊆ granted; a refusal names an alternative missing fewest."""
        met = any(alternative <= granted for alternative in scope_rule.alternatives)
        fewest = min(len(alternative - granted) for alternative in scope_rule.alternatives)
        try:
            require(scope_rule, granted)
        except Denied as denied:
            assert not met
            assert denied.scope is not None
            named = frozenset(denied.scope.split(" "))
            assert named in scope_rule.alternatives
            assert len(named - granted) == fewest == len(missing_scopes(scope_rule, granted))
        else:
            assert met
            assert not missing_scopes(scope_rule, granted)

    @settings(max_examples=200, deadline=None)
    @given(scope_rules(), granted_sets, st.frozensets(scope_words))
    def test_more_scopes_never_take_access_away(
        self, scope_rule: ScopeRule, granted: frozenset[str], more: frozenset[str]
    ) -> None:
        """Granting more scopes can turn a refusal into a pass, never the reverse."""
        try:
            require(scope_rule, granted)
        except Denied:
            return
        require(scope_rule, granted | more)
