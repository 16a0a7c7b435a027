"""Streamed shell output: the pty's bytes sent on to the host as they come, while the command runs.

The shell's own reply stays the authoritative answer (cleaned and capped head and tail); the stream is what a
watcher sees meanwhile: everything up to a possible sentinel (which starts with \\x1e), \\r\\n made \\n, UTF-8
kept whole, and at most `limit` bytes in all, then one truncation marker.
"""

from __future__ import annotations

import codecs
import socket
import threading

from sbxd_wire import send_frame

SENTINEL_START = b"\x1e"
STREAM_CUT = "\n[... output truncated: the stream stops here; the answer keeps the tail ...]\n"


class StreamTap:
    """Receives the pty's raw bytes (`Shell.tap`) and sends `{"ok": true, "chunk": text}` frames on `sock`."""

    def __init__(self, sock: socket.socket, limit: int) -> None:
        self.sock = sock
        self.limit = limit
        self.sent = 0
        self.omitted = 0
        self.held = bytearray()
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.gone = False
        self.lock = threading.Lock()

    def __call__(self, data: bytes) -> None:
        with self.lock:
            self.held += data
            cut = self.held.find(SENTINEL_START)
            if cut < 0:
                cut = len(self.held) - 1 if self.held.endswith(b"\r") else len(self.held)
            ready = bytes(self.held[:cut]).replace(b"\r\n", b"\n")
            del self.held[:cut]
            if ready:
                self._send(ready)

    def _send(self, data: bytes) -> None:
        room = self.limit - self.sent
        if room <= 0:
            self.omitted += len(data)
            return
        text = self.decoder.decode(data[:room])
        self.sent += min(len(data), room)
        self.omitted += max(0, len(data) - room)
        if self.sent >= self.limit:
            text += self.decoder.decode(b"", final=True) + STREAM_CUT
        if text and not self.gone:
            try:
                send_frame(self.sock, {"ok": True, "chunk": text})
            except OSError:
                self.gone = True  # the host went away: the command runs on, unwatched
