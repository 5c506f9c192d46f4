"""The public port's TLS context (SPEC §6.1), and its files read again at a reload.

A reload builds a whole new context from the files (a bad file raises `TlsFileError` and
changes nothing), and every new handshake is switched to it in the listening context's SNI
callback, which OpenSSL calls whether or not the client sends a server name: the new
certificate, key and client CAs are served, exactly those, while connections already open
keep their session. What OpenSSL settles before that callback, the protocol version and
whether a client certificate is asked for, is set on the listening context itself.
"""

from __future__ import annotations

import ssl

from scopegate.config.model import ListenerTls
from scopegate.config.tls_context import server_context, tls_version


class PublicTls:
    def __init__(self, tls: ListenerTls) -> None:
        self.context = server_context(tls)  # the listening socket's
        self._current = self.context  # the one new handshakes are switched to
        self.context.sni_callback = self._switch
        self.settings = tls

    def reload(self, tls: ListenerTls) -> None:
        """Serve `tls`'s files from the next handshake on; `TlsFileError` changes nothing."""
        fresh = server_context(tls)
        listening = self.context
        listening.minimum_version = tls_version(tls.min_version)
        listening.verify_mode = fresh.verify_mode
        self._current = fresh  # the files were read once, into `fresh`: no torn pair
        self.settings = tls

    def _switch(
        self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        if self._current is not context:
            connection.context = self._current
