"""Pieces every store uses: the "not given" marker and a retry for racing writers."""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from typing import TypeVar

from foundation.errors import NotFound
from registry.errors import WriteConflict

T = TypeVar("T")


class Unset(enum.Enum):
    """Marks an update argument that was not given, where None is a value to store."""

    token = 0


UNSET = Unset.token


def retry_write_conflicts(write: Callable[[], T], attempts: int = 12) -> T:
    """Run `write` (one transaction) again when a concurrent writer took the same unique key first.

    Used where the key is computed inside the transaction (next version, next step index): on PostgreSQL
    two transactions can compute the same one; the loser sees the winner's row on its next attempt. Every
    round has a winner, so `attempts` bounds how many writers may race for one key; the jitter spreads them.
    """
    for attempt in range(attempts):
        try:
            return write()
        except WriteConflict:
            if attempt == attempts - 1:
                raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
    raise AssertionError("unreachable")


def not_found(what: str, key: str) -> NotFound:
    """The one error for both "missing" and "belongs to another namespace"."""
    return NotFound(f"{what} {key!r} not found")
