"""What a claim's JSON value must be to be a time (RFC 7519 §2 NumericDate): read in JWTs and DPoP
proofs (`pipeline`) and in introspection answers (`keys.introspection`) alike."""

from __future__ import annotations

import math
from typing import Any


def is_numeric_date(value: Any) -> bool:
    """A finite JSON number: not a boolean (which Python counts as an int), not a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:  # 1e999 parses as inf and 10**400 as an int no float holds: neither is a date
        return math.isfinite(value)
    except OverflowError:
        return False
