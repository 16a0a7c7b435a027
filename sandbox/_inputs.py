"""Checks on a call's inputs that every sandbox makes before anything runs: the timeout's range, the code's size."""

from __future__ import annotations

from foundation.errors import PayloadTooLarge, UserError

MAX_TIMEOUT_S = 3600.0


def checked_timeout(timeout_s: float) -> float:
    """`timeout_s` as a float; UserError unless it is above 0 and at most an hour."""
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise UserError(f"timeout_s must be between 0 and {MAX_TIMEOUT_S:g} seconds", field="timeout_s")
    return float(timeout_s)


def check_code_size(text: str, field: str, max_bytes: int) -> None:
    """PayloadTooLarge when `text` (a command or a cell, named by `field`) is over `max_bytes` in UTF-8."""
    if len(text.encode("utf-8", "replace")) > max_bytes:
        raise PayloadTooLarge(f"{field} is larger than the {max_bytes} byte cap", field=field)
