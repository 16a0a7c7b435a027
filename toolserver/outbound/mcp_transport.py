"""The MCP SDK's way out: httpx2 clients under the egress policy, and one bounded MCP client connection.

The official MCP client speaks Streamable HTTP through httpx2 (httpx's twin). Its clients get the same guarded
transport as `http` tools (`outbound.egress`: only where the policy allows, environment proxies ignored) and the
same bounded body reader (`outbound.body`). A body past the ceiling cancels everything the connection does at
once: the SDK would otherwise reconnect, or wait out its read timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from toolserver.outbound.body import DEFAULT_MAX_OUTBOUND_BYTES, ResponseTooLarge, bounded_transport
from toolserver.outbound.egress import EgressPolicy, guarded_transport

__all__ = ["HttpClientFactory", "guarded_http_client", "mcp_client"]

HttpClientFactory = Callable[[Mapping[str, str], float], httpx2.AsyncClient]


def guarded_http_client(
    policy: EgressPolicy,
    max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
    on_overflow: Callable[[], object] | None = None,
) -> HttpClientFactory:
    """A factory of httpx2 clients that connect only where `policy` allows (environment proxies ignored) and
    read no body past `max_body_bytes` (`on_overflow` is called when one tries)."""

    def make(headers: Mapping[str, str], timeout_s: float) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=dict(headers),
            timeout=httpx2.Timeout(timeout_s),
            transport=bounded_transport(
                guarded_transport(policy, httpx2), httpx2, max_body_bytes, on_overflow
            ),
            trust_env=False,
        )

    return make


@asynccontextmanager
async def mcp_client(
    url: str,
    headers: Mapping[str, str],
    timeout_s: float,
    *,
    policy: EgressPolicy,
    max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
    http_client: HttpClientFactory | None = None,
) -> AsyncIterator[Client]:
    """An MCP client connected to `url` for one exchange; a body past `max_body_bytes` raises ResponseTooLarge.

    `http_client` makes the connection's httpx2 client when given (used as it is: no policy, no ceiling of its
    own); by default it is `guarded_http_client(policy, max_body_bytes)`.
    """
    overflowed = anyio.Event()
    make = http_client or guarded_http_client(policy, max_body_bytes, overflowed.set)
    http = make(headers, timeout_s)
    transport = streamable_http_client(url, http_client=http, max_sse_event_size=max_body_bytes)
    try:
        async with anyio.create_task_group() as watch:

            async def cut_when_overflowed() -> None:
                await overflowed.wait()
                watch.cancel_scope.cancel()

            watch.start_soon(cut_when_overflowed)
            async with http, Client(transport, read_timeout_seconds=timeout_s, cache=None) as client:
                yield client
            watch.cancel_scope.cancel()
    except Exception:
        if overflowed.is_set():  # whatever the SDK made of the cut, the cause is the size
            raise ResponseTooLarge(url, max_body_bytes) from None
        raise
    if overflowed.is_set():
        raise ResponseTooLarge(url, max_body_bytes)
