"""Open event streams and long-polls, counted per namespace in this process (one ingress replica).

Each one holds one of the replica's request slots (Serve's `max_ongoing_requests`) for as long as it is
open, so one tenant's followers could otherwise queue everyone's requests, `/healthz` included. A
namespace may hold `max_streams_per_namespace` of them (over: 429 `quota_exceeded`), all namespaces
together `MAX_STREAMS_PER_REPLICA` (over: 503), and a stream lives at most `max_stream_s`: it then sends
a `reconnect` event and ends cleanly, and the client connects again from where it was.

    @router.get("/things/{id}/events")
    async def events(slot: StreamSlot = Depends(stream_slot)) -> StreamingResponse:
        return StreamingResponse(slot.bounded(body()), media_type="text/event-stream")

    with stream_limits(request).hold(who.namespace):      # a long-poll
        return await wait_for_it(min(wait_s, limits.max_stream_s))
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from fastapi import Depends, Request

from foundation.errors import QuotaExceeded, Unauthorized, Unavailable
from toolserver.http.routes.deps import caller
from toolserver.http.sse import sse_event
from toolserver.service.principal import Principal

__all__ = [
    "KEY_RECHECK_S",
    "MAX_STREAMS_PER_REPLICA",
    "StreamLimits",
    "StreamSlot",
    "stream_limits",
    "stream_slot",
]

MAX_STREAMS_PER_REPLICA = 192
"""Streams of all namespaces on one replica: 64 of the ingress's 256 request slots stay for everything else."""


class StreamLimits:
    """Counts open streams per namespace; `per_namespace=0` means no per-namespace cap."""

    def __init__(
        self, per_namespace: int, max_stream_s: float, *, per_replica: int = MAX_STREAMS_PER_REPLICA
    ) -> None:
        self.per_namespace = per_namespace
        self.max_stream_s = max_stream_s
        self.per_replica = per_replica
        self._open: dict[str, int] = {}

    def open(self, namespace: str) -> int:
        """How many streams `namespace` holds here now."""
        return self._open.get(namespace, 0)

    @contextmanager
    def hold(self, namespace: str) -> Iterator[None]:
        """One stream or long-poll of `namespace` for the block; refused over a cap, nothing held then."""
        held = self._open.get(namespace, 0)
        if self.per_namespace and held >= self.per_namespace:
            raise QuotaExceeded(
                f"namespace {namespace!r} holds {held} open streams and long-polls on this replica, "
                "the most it may; close one first",
                limit=self.per_namespace,
                setting="TOOLSERVER_MAX_STREAMS_PER_NAMESPACE",
            )
        if sum(self._open.values()) >= self.per_replica:
            raise Unavailable("this replica holds as many open streams as it can; try again shortly")
        self._open[namespace] = held + 1
        try:
            yield
        finally:
            left = self._open[namespace] - 1
            if left:
                self._open[namespace] = left
            else:
                del self._open[namespace]


KEY_RECHECK_S = 5.0
"""How often an open stream checks that its key is still valid: a revoked key's streams end within this."""


async def _always_valid() -> bool:
    return True


@dataclass(frozen=True)
class StreamSlot:
    """A held stream: it must end by `deadline` (monotonic seconds), or as soon as its key is revoked."""

    deadline: float
    max_stream_s: float
    key_valid: Callable[[], Awaitable[bool]] = _always_valid

    async def bounded(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`body` until it ends, the slot's lifetime is over (a `reconnect` event) or the key is revoked."""
        pending: asyncio.Future[bytes] | None = None
        checked = time.monotonic()
        try:
            while (left := self.deadline - time.monotonic()) > 0:
                if time.monotonic() - checked >= KEY_RECHECK_S:
                    if not await self.key_valid():
                        revoked = {"type": "unauthorized", "message": "the stream's API key was revoked"}
                        yield sse_event("error", revoked)
                        return
                    checked = time.monotonic()
                # One pending read across waits: cancelling a generator mid-await would end it.
                pending = pending or asyncio.ensure_future(anext(body))
                done, _ = await asyncio.wait({pending}, timeout=min(left, KEY_RECHECK_S))
                if not done:
                    continue
                try:
                    chunk = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield chunk
            farewell = {"reason": "max_stream_s", "max_stream_s": self.max_stream_s}
            yield sse_event("reconnect", farewell)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                with suppress(asyncio.CancelledError, StopAsyncIteration):
                    await pending
            await body.aclose()  # type: ignore[attr-defined]


def stream_limits(request: Request) -> StreamLimits:
    """This process's counter, made from the server's settings on first use."""
    state = request.app.state
    limits: StreamLimits | None = getattr(state, "stream_limits", None)
    if limits is None:
        settings = state.services.settings
        limits = state.stream_limits = StreamLimits(settings.max_streams_per_namespace, settings.max_stream_s)
    return limits


async def stream_slot(request: Request, who: Principal = Depends(caller)) -> AsyncIterator[StreamSlot]:
    """A route's stream slot: 429 when the caller's namespace holds its cap; freed when the response ends.

    A dependency with `yield` is torn down after the response is sent, also when the client goes away
    mid-stream, so a slot can never outlive its connection.
    """
    limits = stream_limits(request)
    auth, header = request.app.state.services.auth, request.headers.get("authorization")

    async def key_valid() -> bool:
        if auth.cached(header) is not None:
            return True
        try:
            await asyncio.to_thread(auth.principal, header)
        except Unauthorized:
            return False
        return True

    with limits.hold(who.namespace):
        yield StreamSlot(time.monotonic() + limits.max_stream_s, limits.max_stream_s, key_valid)
