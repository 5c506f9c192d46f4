"""The throw-away certificate authority the TLS tests use: `scopegate.devtools.certs`, which
`scopegate demo --tls` uses too, under the name the tests know it by."""

from __future__ import annotations

import json
from pathlib import Path

from scopegate.devtools.certs import (
    DAY,
    ClientFiles,
    ServerFiles,
    load_certificate,
    not_after,
    serial_number,
    server_context,
    write_new_key,
)
from scopegate.devtools.certs import LocalAuthority as TestAuthority

__all__ = [
    "DAY",
    "ClientFiles",
    "ServerFiles",
    "TestAuthority",
    "load_certificate",
    "not_after",
    "serial_number",
    "server_context",
    "write_new_key",
    "yaml_path",
]


def yaml_path(path: Path) -> str:
    """`path` as a YAML value in a configuration file: a JSON string is a YAML string, whatever
    characters the path holds."""
    return json.dumps(str(path))
