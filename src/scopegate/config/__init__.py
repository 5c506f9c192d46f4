"""Configuration: read once at load time; the request path sees nothing but `config.model`."""
