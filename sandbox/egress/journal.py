"""What a session's egress proxy did: its recent connections, allowed and denied, and the totals."""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MAX_TEXT", "Attempt", "Journal"]

MAX_TEXT = 256  # of a host or a reason kept: what a sandbox sends is not stored whole


@dataclass
class Attempt:
    """One connection the sandbox asked for; bytes count up while an allowed one is open."""

    time: float
    host: str
    port: int
    method: str  # CONNECT, or the plain request's method
    allowed: bool = False
    reason: str = ""  # why it was denied
    bytes_up: int = 0  # from the sandbox
    bytes_down: int = 0  # to the sandbox
    duration_s: float | None = None  # set when an allowed connection ends


class Journal:
    """The newest `size` attempts of one session and counts of all; `on_denied` hears of each denial."""

    def __init__(self, size: int, on_denied: Callable[[Attempt], None] | None = None) -> None:
        self._recent: collections.deque[Attempt] = collections.deque(maxlen=size)
        self._on_denied = on_denied
        self.allowed_count = 0
        self.denied_count = 0

    def allowed(self, attempt: Attempt) -> None:
        """Record a connection let through."""
        attempt.allowed = True
        self.allowed_count += 1
        self._recent.append(attempt)

    def denied(self, attempt: Attempt) -> None:
        """Record a refusal, and tell whoever listens."""
        attempt.allowed = False
        attempt.host, attempt.reason = attempt.host[:MAX_TEXT], attempt.reason[:MAX_TEXT]
        self.denied_count += 1
        self._recent.append(attempt)
        if self._on_denied is not None:
            self._on_denied(attempt)

    def report(self) -> dict[str, Any]:
        """The counts and the recent attempts, oldest first."""
        return {
            "allowed": self.allowed_count,
            "denied": self.denied_count,
            "connections": [asdict(a) for a in self._recent],
        }
