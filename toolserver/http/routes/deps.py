"""Request-scoped dependencies: the services and the authenticated caller."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request

from toolserver.service.principal import Principal

__all__ = ["caller", "services"]


async def services(request: Request) -> Any:
    # async: FastAPI would run a plain function dependency in a worker thread on every request.
    """The app's services."""
    return request.app.state.services


async def caller(request: Request) -> Principal:
    """The principal of the request's API key (401 without a valid one)."""
    auth = request.app.state.services.auth
    header = request.headers.get("authorization")
    # Cached keys answer without a thread hop; a cache miss reads the database off the event loop.
    hit = auth.cached(header)
    if hit is not None:
        return hit
    return await asyncio.to_thread(auth.principal, header)
