"""A complete answer as scopegate sends it: status, headers as wire bytes, a body held in memory.

Denials, upstream failures and small upstream answers are all `Answer`s; the server
(`server/request.py`) adds the framing (`Content-Length`, `Connection`, `Date`) when it
writes one, so no answer can carry framing that disagrees with its body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@dataclass(slots=True)
class Answer:
    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    reason: str = ""  # the upstream's phrase when relayed; the standard one otherwise
    close: bool = False  # the connection is closed once this answer is sent

    def add(self, name: str, value: str) -> None:
        self.headers.append((name.encode("latin-1"), value.encode("latin-1")))
