"""Output caps: long output keeps its head and tail, with a visible marker where bytes were left out.

The one capper of the project. The guest daemon caps shell output with it, and the host imports this file as
`sandbox._guest.sbxd_output` (through `sandbox._output`) for kernel output and the fake sandbox, so every
backend cuts alike. Hence stdlib only, and no import of another guest module.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

DEFAULT_OUTPUT_LIMIT = 64 * 1024


def truncation_marker(omitted: int) -> str:
    """The line that stands where `omitted` bytes of output were left out."""
    return f"\n[... output truncated: {omitted} bytes omitted ...]\n"


class CappedOutput:
    """Keeps the head and a rolling tail of a byte stream, never more than `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.head_max = limit * 3 // 4
        self.tail_max = limit - self.head_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes | bytearray) -> None:
        """Take the next bytes of the stream."""
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data and self.tail_max:
            self.tail += data[-self.tail_max :]
            del self.tail[: max(0, len(self.tail) - self.tail_max)]

    def add_text(self, text: str) -> None:
        """Take the next text of the stream, as UTF-8."""
        self.add(text.encode("utf-8", "replace"))

    @property
    def truncated(self) -> bool:
        """Whether bytes were left out between the head and the tail."""
        return self.total != len(self.head) + len(self.tail)

    def text(self, clean: Callable[[bytes], bytes] | None = None) -> tuple[str, bool]:
        """The output as text, and whether it was cut; `clean` edits the head and the tail before decoding."""
        head, tail = bytes(self.head), bytes(self.tail)
        if clean is not None:
            head, tail = clean(head), clean(tail)
        if not self.truncated:
            return (head + tail).decode("utf-8", "replace"), False
        while tail[:1] and tail[0] & 0xC0 == 0x80:  # a character cut in half at the start of the tail
            tail = tail[1:]
        omitted = self.total - len(self.head) - len(self.tail)
        head_text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
        return head_text + truncation_marker(omitted) + tail.decode("utf-8", "replace"), True


def cap_text(text: str, limit: int = DEFAULT_OUTPUT_LIMIT) -> tuple[str, bool]:
    """Return `text` within `limit` UTF-8 bytes (plus the marker) and whether it was cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text, False
    capped = CappedOutput(limit)
    capped.add(raw)
    return capped.text()
