"""The public port's TLS context (SPEC §6.1), and its files read again at a reload.

One context serves every connection; a reload loads the new certificate and key into it, so
that every new handshake gets them whether or not the client sends SNI, while connections
already open keep their session. The new files are first checked in a context of their own:
a bad file raises `TlsFileError` and changes nothing. A reload can change the certificate,
the key, `min_version` and whether client certificates are asked for; the CAs of `client_ca`
are added to those already trusted (removing a CA needs a restart).
"""

from __future__ import annotations

import ssl

from scopegate.config.model import ListenerTls
from scopegate.config.tls_context import server_context, tls_version


class PublicTls:
    def __init__(self, tls: ListenerTls) -> None:
        self.context = server_context(tls)
        self.settings = tls

    def reload(self, tls: ListenerTls) -> None:
        """Serve `tls`'s files from the next handshake on; `TlsFileError` changes nothing."""
        server_context(tls)  # every file checked first, apart from the live context
        context = self.context
        context.load_cert_chain(tls.cert, tls.key)
        context.minimum_version = tls_version(tls.min_version)
        if tls.client_ca is None:
            context.verify_mode = ssl.CERT_NONE
        else:
            context.load_verify_locations(cafile=tls.client_ca)
            required = tls.client_auth == "required"
            context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
        self.settings = tls
