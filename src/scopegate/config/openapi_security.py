"""An OpenAPI operation's `security` (else the document's) → what a route requires (SPEC §6.6).

The list of requirement objects is an OR; each object is an AND of schemes, and the OAuth 2.0
and OpenID Connect schemes among them name the scopes a token must carry. Mapped one to one:

- an empty list, or an empty object among the alternatives: the operation is public;
- an object of OAuth 2.0 / OpenID Connect schemes only: one alternative, the union of their
  scopes (no scopes: any valid token);
- an object that names OAuth schemes and others (an API key, HTTP basic): its OAuth scopes,
  with a note that the other schemes are left to the upstream, which receives the request's
  own credentials unchanged;
- an object naming only schemes scopegate cannot check: that alternative is dropped, with a
  note. Dropping an alternative only ever narrows who gets in; when every alternative is
  dropped, no token passes the operation's route: never made public.

Usage::

    mapped = map_security(requirements, schemes)   # schemes: components.securitySchemes
    mapped.public, mapped.rule, mapped.notes       # rule None: nothing could be mapped
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scopegate.config.model import ScopeRule

TOKEN_SCHEMES = frozenset({"oauth2", "openIdConnect"})


@dataclass(frozen=True)
class SecurityMapping:
    """What an operation's security requirements become; `rule` is None when none could."""

    public: bool
    rule: ScopeRule | None
    notes: tuple[str, ...] = ()


def map_security(
    requirements: Sequence[Mapping[str, Sequence[str]]], schemes: Mapping[str, Any]
) -> SecurityMapping:
    """The route requirement that `requirements` state, given the document's `schemes`."""
    if not requirements or any(not requirement for requirement in requirements):
        return SecurityMapping(public=True, rule=None)
    alternatives: list[frozenset[str]] = []
    notes: list[str] = []
    for requirement in requirements:
        scopes, note = _alternative(requirement, schemes)
        if note:
            notes.append(note)
        if scopes is not None:
            alternatives.append(scopes)
    if not alternatives:
        notes.append("no alternative of its security can be checked by scopegate")
        return SecurityMapping(public=False, rule=None, notes=tuple(notes))
    return SecurityMapping(False, ScopeRule(tuple(dict.fromkeys(alternatives))), tuple(notes))


def _alternative(
    requirement: Mapping[str, Sequence[str]], schemes: Mapping[str, Any]
) -> tuple[frozenset[str] | None, str | None]:
    """One requirement object's scopes (None: it names no token scheme), and a note."""
    token = [name for name in requirement if scheme_type(schemes, name) in TOKEN_SCHEMES]
    others = sorted(name for name in requirement if name not in token)
    described = ", ".join(f"{name} ({scheme_type(schemes, name) or 'undefined'})"
                          for name in others)  # fmt: skip
    if not token:
        return None, f"security alternative {described} names no OAuth 2.0 scheme: dropped"
    scopes = frozenset(scope for name in token for scope in requirement[name])
    if not others:
        return scopes, None
    note = f"security alternative with {', '.join(sorted(token))} also requires {described}, "
    return scopes, note + "which scopegate does not check: left to the upstream"


def scheme_type(schemes: Mapping[str, Any], name: str) -> str | None:
    """The `type` of the security scheme called `name`, None when it is not defined."""
    scheme = schemes.get(name)
    kind = scheme.get("type") if isinstance(scheme, Mapping) else None
    return kind if isinstance(kind, str) else None


def scope_catalogue(schemes: Mapping[str, Any]) -> dict[str, str]:
    """Every scope the OAuth 2.0 schemes' flows describe, with its description (the first
    description met wins)."""
    catalogue: dict[str, str] = {}
    for scheme in schemes.values():
        if not isinstance(scheme, Mapping) or scheme.get("type") != "oauth2":
            continue
        for flow in (scheme.get("flows") or {}).values():
            for scope, text in ((flow or {}).get("scopes") or {}).items():
                catalogue.setdefault(str(scope), " ".join(str(text or "").split()))
    return catalogue
