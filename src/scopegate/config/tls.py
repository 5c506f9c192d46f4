"""`tls:` (SPEC §6.1, the public port) as the file says it.

The files are read when the configuration loads, so that `scopegate check` and a reload
(SIGHUP) refuse a missing file, a key that does not match its certificate or a CA bundle that
is not PEM, at the key that names it; a running server keeps its certificate then. A path is
relative to the configuration file's directory.
"""

from __future__ import annotations

import re
from ipaddress import ip_network

from scopegate.config.build import Builder
from scopegate.config.errors import quoted
from scopegate.config.model import ForwardedClientCert, ListenerTls
from scopegate.config.reading import relative_to
from scopegate.config.tls_context import TlsFileError, server_context

_SECTION = ("tls",)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: a header name


def tls(b: Builder) -> ListenerTls | None:
    """The public port's TLS, or None without a `tls:` section (or with errors in it)."""
    if b.doc.get(_SECTION) is None or not b.doc.clean(_SECTION):
        return None
    spec = b.doc.trusted(_SECTION)
    if spec.get("client_auth") == "required" and not spec.get("client_ca"):
        b.error((*_SECTION, "client_auth"), "required needs client_ca: the CAs to check against")
        return None
    client_ca = spec.get("client_ca")
    written = ListenerTls(
        cert=relative_to(b.doc.file, spec["cert"]),
        key=relative_to(b.doc.file, spec["key"]),
        min_version=spec.get("min_version", "1.2"),
        client_ca=None if client_ca is None else relative_to(b.doc.file, client_ca),
        client_auth=spec.get("client_auth", "optional"),
    )
    try:
        server_context(written)
    except TlsFileError as error:
        b.error((*_SECTION, error.key), str(error))
        return None
    return written


def forwarded_client_cert(b: Builder) -> ForwardedClientCert | None:
    """`forwarded_client_cert:`, its networks parsed; None without the section."""
    path = ("forwarded_client_cert",)
    if b.doc.get(path) is None or not b.doc.clean(path):
        return None
    spec = b.doc.trusted(path)
    networks = []
    for index, written in enumerate(spec["trusted_proxies"]):
        try:
            networks.append(ip_network(written, strict=False))
        except ValueError:
            b.error(
                (*path, "trusted_proxies", index),
                f"{quoted(written)} is not a network, like 10.0.0.0/8",
            )
    header = spec.get("header", "Client-Cert")
    if not _TOKEN.fullmatch(header):
        b.error((*path, "header"), f"{quoted(header)} is not a header name")
    if not b.doc.clean(path):
        return None
    return ForwardedClientCert(header=header.lower(), trusted_proxies=tuple(networks))
