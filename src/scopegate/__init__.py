"""scopegate: a reverse-proxy API gateway that enforces OAuth 2.0 scopes carried by bearer JWTs."""

__version__ = "0.1.0"
