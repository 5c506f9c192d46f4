"""The RFC 9728 protected resource metadata document scopegate publishes, so that OAuth clients
(MCP clients first among them) find the resource's authorization servers and scopes from a 401.

Built once per configuration generation; nothing here reads the file (see `config.metadata`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from scopegate.config.algorithms import SIGNING_ALGORITHMS
from scopegate.config.model import WELL_KNOWN_RESOURCE_METADATA, Config


@dataclass(frozen=True, slots=True)
class PublishedMetadata:
    """The document as scopegate serves it: at `path` on the public port, named by `url` in
    every 401 challenge."""

    path: str
    url: str
    body: bytes


def published_metadata(config: Config) -> PublishedMetadata | None:
    """The RFC 9728 §2 document of `config`, or None when it configures no `resource_metadata`.

    `scopes_supported` is the `scopes:` catalogue, or, without one, every scope a route asks
    for; `authorization_servers` are the issuers, whose discovery documents a client reads next.
    """
    metadata = config.resource_metadata
    if metadata is None:
        return None
    scopes = sorted(config.scopes) or sorted(
        {scope for route in config.routes for scope in route.scopes.all_scopes}
    )
    document: dict[str, object] = {
        "resource": metadata.resource,
        "authorization_servers": [issuer.issuer for issuer in config.issuers],
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        # RFC 9449 §5.1 / RFC 9728 §2: required when every issuer's tokens must be DPoP-bound.
        "dpop_bound_access_tokens_required": all(i.dpop == "required" for i in config.issuers),
    }
    if any(issuer.dpop != "disabled" for issuer in config.issuers):
        document["dpop_signing_alg_values_supported"] = list(SIGNING_ALGORITHMS)
    if metadata.documentation is not None:
        document["resource_documentation"] = metadata.documentation
    path = urlsplit(metadata.public_url).path + WELL_KNOWN_RESOURCE_METADATA
    body = json.dumps(document, ensure_ascii=True, indent=2).encode() + b"\n"
    return PublishedMetadata(path, metadata.url, body)
