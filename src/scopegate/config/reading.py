"""Reading a configuration file's bytes: all of loading that a serving process needs itself.

Parsing and checking (YAML, the JSON schema, building the model) happen in a child process
(`scopegate.commands.loading`), so a server never imports the YAML and schema libraries at all.
"""

from __future__ import annotations

import os

from scopegate.config.errors import ConfigError, ConfigErrors
from scopegate.config.model import Source

MAX_FILE_BYTES = 1 << 20  # a configuration is a few KiB; more is a mistake or an attack


def read_config_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes (one more than `MAX_FILE_BYTES` at most); `ConfigErrors` if unreadable."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        message = f"cannot read: {error.strerror}"
        raise ConfigErrors([ConfigError(Source(name, 1, 1), message)]) from None


def relative_to(config_file: str, file: str) -> str:
    """`file` as written in a configuration: relative to the directory of that file."""
    return os.path.join(os.path.dirname(config_file), file)
