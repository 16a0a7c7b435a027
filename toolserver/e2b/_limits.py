"""The server's per-namespace cap on open streams, shared with the native API's streams on this replica."""

from __future__ import annotations

from typing import Any

from toolserver.http.stream_limits import StreamLimits

__all__ = ["stream_limits_of"]


def stream_limits_of(state: Any) -> StreamLimits:
    """The main app's counter (the one `toolserver.http.stream_limits.stream_limits` makes on first use)."""
    limits: StreamLimits | None = getattr(state, "stream_limits", None)
    if limits is None:
        settings = state.services.settings
        limits = state.stream_limits = StreamLimits(settings.max_streams_per_namespace, settings.max_stream_s)
    return limits
