"""Configuration errors as tests read them: the messages of a file that does not load, and
the line a key is written on.

Usage::

    assert errors_of(text) == [f"gateway.yaml:{line_of(text, 'cert')}:9: tls.cert: ..."]
"""

from __future__ import annotations

import pytest

from scopegate.config.errors import ConfigErrors
from scopegate.config.load import load_config_text


def errors_of(text: str) -> list[str]:
    """Every error of the configuration `text` (named gateway.yaml), as printed."""
    with pytest.raises(ConfigErrors) as caught:
        load_config_text(text, "gateway.yaml", {})
    return [str(error) for error in caught.value.errors]


def line_of(text: str, key: str) -> int:
    """The line (from 1) of the first line of `text` that starts, once indented, with `key:`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith(f"{key}:"):
            return number
    raise AssertionError(f"no {key}: in {text}")
