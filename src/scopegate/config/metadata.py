"""`resource_metadata:` (SPEC §6.6, RFC 9728) as the file says it: the URLs checked, the resource
identifier found. `config.resource_document` makes the document served from it.

The resource identifier is what tokens are issued for: by default the one audience every issuer
names (the API identifier of Auth0, the audience of Okta's authorization server). When the
issuers name several, or none, the file must say which one this resource is.
"""

from __future__ import annotations

from collections.abc import Sequence

from scopegate.config.build import Builder, http_url_problem
from scopegate.config.errors import quoted
from scopegate.config.model import Issuer, ResourceMetadata

_SECTION = ("resource_metadata",)


def resource_metadata(b: Builder, issuers: Sequence[Issuer]) -> ResourceMetadata | None:
    if b.doc.get(_SECTION) is None:
        return None
    spec = b.doc.trusted(_SECTION)
    public_url = _checked_url(b, spec, "public_url", query_allowed=False)
    documentation = _checked_url(b, spec, "documentation", query_allowed=True)
    resource = _checked_url(b, spec, "resource", query_allowed=True) or _one_audience(b, issuers)
    if public_url is None or resource is None:
        return None
    return ResourceMetadata(public_url.rstrip("/"), resource, documentation)


def _checked_url(
    b: Builder, spec: dict[str, object], key: str, *, query_allowed: bool
) -> str | None:
    value = spec.get(key)
    if not isinstance(value, str):
        return None
    problem = http_url_problem(value, bare=not query_allowed)
    if problem is None and "#" in value:
        problem = f"{quoted(value)} must not have a fragment (RFC 9728 §1.2)"
    if problem is not None:
        b.error((*_SECTION, key), problem)
        return None
    return value


def _one_audience(b: Builder, issuers: Sequence[Issuer]) -> str | None:
    audiences = sorted({audience for issuer in issuers for audience in issuer.audiences})
    if len(audiences) == 1:
        return audiences[0]
    named = ", ".join(quoted(audience) for audience in audiences) or "none"
    message = f"set resource: the issuers name {len(audiences)} audiences ({named}), so which one"
    b.error(_SECTION, f"{message} identifies this resource cannot be told")
    return None
