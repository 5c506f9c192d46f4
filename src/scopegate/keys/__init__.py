"""Signing keys of the trusted issuers: the only place the gateway talks to an identity provider."""
