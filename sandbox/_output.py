"""Output caps: long output keeps its head and tail with a visible marker between them."""

from __future__ import annotations

DEFAULT_OUTPUT_LIMIT = 64 * 1024


def truncation_marker(omitted: int) -> str:
    return f"\n[... output truncated: {omitted} bytes omitted ...]\n"


def cap_text(text: str, limit: int = DEFAULT_OUTPUT_LIMIT) -> tuple[str, bool]:
    """Return `text` within `limit` UTF-8 bytes (plus the marker) and whether it was cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text, False
    head = limit * 3 // 4
    tail = limit - head
    omitted = len(raw) - head - tail
    cut = (
        raw[:head].decode("utf-8", "ignore")
        + truncation_marker(omitted)
        + raw[-tail:].decode("utf-8", "ignore")
    )
    return cut, True
