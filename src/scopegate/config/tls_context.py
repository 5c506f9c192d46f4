"""The TLS context `tls:` (SPEC §6.1) makes for the public port, from its files read now.

The standard library's (OpenSSL): TLS 1.2 or 1.3 as `min_version` says, the `ssl` module's
default ciphers (forward-secret AEAD only for 1.2), ALPN `http/1.1`, and, with `client_ca`,
client certificates asked for (`optional`) or required (`required`). Used when the file loads
(to refuse a bad file at the key that names it) and by the server, at start and at a reload.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from cryptography import x509

from scopegate.config.errors import quoted
from scopegate.config.model import ListenerTls, UpstreamTls
from scopegate.errors import ScopegateError

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

FileKey = Literal["cert", "key", "client_ca", "ca"]


class TlsFileError(ScopegateError):
    """A file `tls:` names cannot be used; `key` is the one (cert, key, client_ca)."""

    def __init__(self, key: FileKey, message: str) -> None:
        super().__init__(message)
        self.key = key


def server_context(tls: ListenerTls) -> ssl.SSLContext:
    """A server context for `tls`, its files read now; `TlsFileError` names the one at fault."""
    if tls.client_ca is not None and not Path(tls.client_ca).is_file():
        raise TlsFileError("client_ca", f"{quoted(tls.client_ca)} is not a readable file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = tls_version(tls.min_version)
    context.set_alpn_protocols(["http/1.1"])
    _load_pair(context, tls.cert, tls.key)
    if tls.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except (ssl.SSLError, OSError) as error:
            raise TlsFileError(
                "client_ca", f"{quoted(tls.client_ca)} is not a PEM bundle of CA certificates "
                f"({_reason(error)})",
            ) from None  # fmt: skip
        context.verify_mode = (
            ssl.CERT_REQUIRED if tls.client_auth == "required" else ssl.CERT_OPTIONAL
        )
    return context


def client_context(tls: UpstreamTls | None) -> ssl.SSLContext:
    """A client context towards an upstream: the system trust store or `tls.ca`, a client
    certificate when `tls.cert` is set; the certificate and host name are always verified.
    `TlsFileError` names the file at fault."""
    ca = None if tls is None else tls.ca
    if ca is not None and not Path(ca).is_file():
        raise TlsFileError("ca", f"{quoted(ca)} is not a readable file")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (ssl.SSLError, OSError) as error:
        raise TlsFileError("ca", f"{quoted(str(ca))} is not a PEM bundle of CA certificates "
                                 f"({_reason(error)})") from None  # fmt: skip
    context.set_alpn_protocols(["http/1.1"])
    if tls is not None and tls.cert is not None and tls.key is not None:
        _load_pair(context, tls.cert, tls.key)
    return context


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """Load a certificate chain and its key into `context`; `TlsFileError` names the file."""
    files: tuple[tuple[FileKey, str], ...] = (("cert", cert), ("key", key))
    for name, path in files:
        if not Path(path).is_file():
            raise TlsFileError(name, f"{quoted(path)} is not a readable file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        which: FileKey = "key" if "KEY_VALUES_MISMATCH" in str(error) else "cert"
        raise TlsFileError(which, f"cannot use {quoted(cert)} with {quoted(key)}: "
                                  f"{_reason(error)}") from None  # fmt: skip
    except OSError as error:
        raise TlsFileError("cert", f"cannot read {quoted(cert)}: {error}") from None


def tls_version(written: Literal["1.2", "1.3"]) -> ssl.TLSVersion:
    return _VERSIONS[written]


def expires_at(path: str) -> float:
    """The Unix time at which the first certificate in the PEM file `path` expires."""
    certificate = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return certificate.not_valid_after_utc.timestamp()


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        if error.reason == "PEM_LIB" or "PEM lib" in str(error):
            return "not PEM, or not a certificate and key in PEM"
        return error.reason.lower().replace("_", " ")
    if "PEM lib" in str(error):
        return "not PEM, or not a certificate and key in PEM"
    return str(error)
