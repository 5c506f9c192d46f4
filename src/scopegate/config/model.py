"""The validated configuration (SPEC §2) as frozen values.

Everything here has been checked by `config.build`; code on the request path may trust it.
Values that came from the file keep the `Source` they were read at, so that `check`, `explain`
and reload errors can point at them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Literal

from scopegate.config.algorithms import DEFAULT_ALGORITHMS


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value was written: 1-based line and column, as editors and `FILE:LINE:COL` count."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_SOURCE = Source("<built-in>", 1, 1)


@dataclass(frozen=True, slots=True)
class Address:
    """A host and port to listen on; `host` may be an IPv6 literal without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Introspection:
    """`issuers[].introspection` (SPEC §6.4, RFC 7662): how this issuer's opaque tokens (and with
    `jwt`, its JWTs too) are looked up. `client_secret` is never printed or logged."""

    client_id: str
    client_secret: str = field(repr=False)
    endpoint: str | None = None  # None: `introspection_endpoint` from discovery
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    cache_ttl: float = 60.0  # an active answer is reused this long, never past the token's exp
    negative_cache_ttl: float = 10.0  # an inactive answer is reused this long
    timeout: float = 5.0  # per call; slower is `issuer_unavailable`
    jwt: bool = False  # this issuer's JWTs are introspected as well (revocation)


DpopMode = Literal["disabled", "allowed", "required"]


@dataclass(frozen=True, slots=True)
class Issuer:
    """One trusted token issuer. Its keys are bound to it: a token is checked only with the keys
    of the issuer its `iss` names."""

    issuer: str
    jwks_uri: str | None = None  # None: discovered from {issuer}/.well-known/openid-configuration
    audiences: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    scope_claims: tuple[str, ...] = ("scope", "scp")  # dotted names read nested claims
    leeway: float = 30.0
    required_claims: tuple[str, ...] = ("exp",)
    token_type: str | None = None  # e.g. "at+jwt" (RFC 9068); None: `typ` is not checked
    introspection: Introspection | None = None  # RFC 7662: opaque tokens of this issuer
    # RFC 9449. `allowed` accepts `Authorization: DPoP` with a proof; `required` refuses this
    # issuer's tokens without `cnf.jkt`; `disabled` (the default, as before DPoP existed here)
    # accepts only Bearer. Under every mode a DPoP-bound token sent as `Bearer` is refused.
    dpop: DpopMode = "disabled"
    dpop_nonce: bool = False  # proofs must carry a nonce scopegate issued (`use_dpop_nonce`)
    source: Source = UNKNOWN_SOURCE


@dataclass(frozen=True, slots=True)
class JwksPolicy:
    cache_ttl: float = 600.0
    min_refresh_interval: float = 30.0
    max_stale: float = 86400.0
    timeout: float = 5.0
    max_response_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """`upstreams.NAME.tls` (SPEC §6.1): whom to trust, and who scopegate is, towards an
    https:// upstream. Verification is always on."""

    ca: str | None = None  # PEM bundle; None: the system trust store
    cert: str | None = None  # client certificate (mTLS), with `key`
    key: str | None = None
    server_name: str | None = None  # SNI and the name verified; None: the URL's host


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a route's traffic goes: `scheme://host:port` plus an optional base path."""

    name: str
    scheme: Literal["http", "https"]
    host: str
    port: int
    base_path: str = ""  # "" or "/api" (never a trailing slash)
    timeout: float = 30.0
    connect_timeout: float = 5.0
    preserve_host: bool = False
    source: Source = UNKNOWN_SOURCE
    tls: UpstreamTls | None = None  # https:// only; None: the system trust store, no client cert

    @property
    def authority(self) -> str:
        """The `Host` header value: the port is left out when it is the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.authority}"


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int = 16384
    max_token_bytes: int = 8192
    max_body_bytes: int = 10_485_760
    header_timeout: float = 10.0
    idle_timeout: float = 75.0
    max_connections: int = 10_000  # per process; more are answered 503 and closed
    token_cache_size: int = 10_000  # verified tokens remembered until exp; 0 turns it off
    websocket_idle_timeout: float = 300.0  # a relayed WebSocket with no byte either way (§6.3)


@dataclass(frozen=True, slots=True)
class ScopeRule:
    """Required scopes as OR-of-AND, the shape of an OpenAPI security requirement.

    ``[a, b]`` in the file is one alternative ``{a, b}``; ``{any: [a, b]}`` is two alternatives
    ``{a}`` and ``{b}``; ``[[a, b], [c]]`` is ``{a, b}`` or ``{c}``. A rule with one empty
    alternative needs no scope at all (a route with `auth: required` and no `scopes`).
    """

    alternatives: tuple[frozenset[str], ...] = (frozenset(),)

    @property
    def needs_nothing(self) -> bool:
        return any(not alternative for alternative in self.alternatives)

    @property
    def all_scopes(self) -> frozenset[str]:
        return frozenset().union(*self.alternatives)


NO_SCOPES = ScopeRule()
# No alternative at all: no set of granted scopes meets it, and `scopes.require` refuses (403).
# What `auth: deny` means, and what an OpenAPI operation scopegate cannot check becomes.
NO_TOKEN_PASSES = ScopeRule(alternatives=())


@dataclass(frozen=True, slots=True)
class Forwarding:
    authorization: bool = True
    # (claim name, header name) pairs; a dotted claim name reads a nested claim.
    claims_to_headers: tuple[tuple[str, str], ...] = (("sub", "X-Auth-Subject"),)


SCOPES_HEADER = "X-Auth-Scopes"


@dataclass(frozen=True, slots=True)
class Route:
    """One entry of `routes:`. `methods` is None when every method is allowed."""

    name: str
    path: str
    upstream: str
    methods: frozenset[str] | None = None
    auth: Literal["required", "none"] = "required"
    # report: what the token, audience and scope checks would deny is forwarded, and counted as
    # a shadow denial (SPEC §6.6); the request's own shape is checked either way.
    enforce: Literal["enforce", "report"] = "enforce"
    cors: bool = True  # False: no CORS for this route, even with a top-level `cors:`
    websocket: bool = False  # SPEC §6.3: an upgrade to WebSocket is relayed after the checks
    # The query parameter an upgrade request may carry its token in (browsers cannot set
    # `Authorization` on a WebSocket); removed before forwarding, never logged.
    websocket_token_query: str | None = None
    scopes: ScopeRule = NO_SCOPES
    audience: str | None = None  # replaces the issuers' `audiences` for this route
    # RFC 9470 step-up: the token's `acr` must be one of these, and its `auth_time` no older
    # than `max_age` seconds; None: not checked.
    acr_values: tuple[str, ...] | None = None
    max_age: int | None = None
    strip_prefix: str | None = None
    max_body_bytes: int | None = None
    source: Source = UNKNOWN_SOURCE
    # Where a generated route came from, for `check`: "contacts.yaml#listContacts" for an
    # OpenAPI operation (SPEC §6.6); None for a route written under `routes:`.
    origin: str | None = None

    # Whether this route asks for a particular authentication (RFC 9470): set from the two
    # above, a field rather than a property because every request reads it.
    steps_up: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        steps_up = self.acr_values is not None or self.max_age is not None
        object.__setattr__(self, "steps_up", steps_up)

    @property
    def allowed_methods(self) -> frozenset[str] | None:
        """The methods this route answers: HEAD is allowed wherever GET is (SPEC §3.1)."""
        if self.methods is not None and "GET" in self.methods:
            return self.methods | {"HEAD"}
        return self.methods


@dataclass(frozen=True, slots=True)
class Cors:
    """SPEC §6.2: which web origins may call the API from a browser, and how. Origins are exact
    (`https://app.example.com`); `any_origin` is `"*"`, never with credentials. Header names are
    lower-case; `allow_methods` None: the methods of the routes on the preflight's path."""

    allow_origins: frozenset[str] = frozenset()
    any_origin: bool = False
    allow_methods: tuple[str, ...] | None = None
    allow_headers: tuple[str, ...] = ("authorization", "content-type")
    expose_headers: tuple[str, ...] = ("x-request-id",)
    allow_credentials: bool = False
    max_age: int = 600


@dataclass(frozen=True, slots=True)
class ListenerTls:
    """`tls:` (SPEC §6.1): the public port speaks HTTPS only. Paths to PEM files, read at start
    and again at every reload; `client_ca` asks clients for certificates."""

    cert: str
    key: str
    min_version: Literal["1.2", "1.3"] = "1.2"
    client_ca: str | None = None
    client_auth: Literal["optional", "required"] = "optional"


@dataclass(frozen=True, slots=True)
class ForwardedClientCert:
    """`forwarded_client_cert:` (SPEC §6.1): TLS ends at a proxy in front of scopegate, which
    forwards the client's certificate in `header` (RFC 9440); read only from `trusted_proxies`,
    removed from every other request."""

    header: str = "client-cert"  # lower-case
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()

    def trusts(self, remote: str | None) -> bool:
        if remote is None:
            return False
        try:
            address = ip_address(remote)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_proxies)


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """One entry of `rate_limits.rules` (SPEC §6.5): `limit` requests per `window` seconds for
    each value of `key`, smoothed (GCRA); on the routes named, or on every route (None)."""

    name: str
    key: Literal["client", "subject", "ip"]
    limit: int
    window: float
    routes: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class RedisStore:
    """`rate_limits.store: redis://[:password@]host:port/db` (`rediss://`: TLS)."""

    url: str  # as written, password included: never printed
    display: str  # the same without the password, for logs and `check`


@dataclass(frozen=True, slots=True)
class RateLimits:
    rules: tuple[RateLimitRule, ...]
    store: RedisStore | None = None  # None: `memory`, counted in each process
    on_store_error: Literal["allow", "deny"] = "allow"
    timeout: float = 0.1  # a store call slower than this counts as a store error


WELL_KNOWN_RESOURCE_METADATA = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True, slots=True)
class ResourceMetadata:
    """RFC 9728 protected resource metadata: how clients reach scopegate (`public_url`, no
    trailing slash), the resource identifier tokens are issued for, and where its people read."""

    public_url: str
    resource: str
    documentation: str | None = None

    @property
    def url(self) -> str:
        """Where clients fetch the document: named in every 401 challenge."""
        return self.public_url + WELL_KNOWN_RESOURCE_METADATA


@dataclass(frozen=True, slots=True)
class Config:
    issuers: tuple[Issuer, ...]
    upstreams: Mapping[str, Upstream]
    routes: tuple[Route, ...]
    listen: Address = Address("0.0.0.0", 8080)
    admin_listen: Address = Address("127.0.0.1", 9100)
    jwks: JwksPolicy = field(default_factory=JwksPolicy)
    limits: Limits = field(default_factory=Limits)
    scopes: Mapping[str, str] = field(default_factory=dict)  # catalogue: scope -> description
    scope_sources: Mapping[str, Source] = field(default_factory=dict)  # where each was declared
    forward: Forwarding = field(default_factory=Forwarding)
    enforce: Literal["enforce", "report"] = "enforce"  # the default of every route
    resource_metadata: ResourceMetadata | None = None
    cors: Cors | None = None
    rate_limits: RateLimits | None = None
    tls: ListenerTls | None = None
    forwarded_client_cert: ForwardedClientCert | None = None
    file: str = "<built-in>"
    # What loading skipped without refusing the file, as `FILE:LINE:COL: message` (operations
    # of an OpenAPI description that cannot be mapped): `check` shows them as warnings.
    load_warnings: tuple[str, ...] = ()
