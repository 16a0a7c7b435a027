"""Call a Ray actor's generic `call(method, *args)` as if it were a local async object."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ray.exceptions import RayActorError, RayTaskError

from foundation.errors import ToolServerError, Unavailable

__all__ = ["ActorClient", "call_actor"]


async def call_actor(ref: Awaitable[Any], what: str, **details: Any) -> Any:
    """Await an actor call: our errors come back as themselves, a lost actor as Unavailable naming `what`."""
    try:
        return await ref
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ToolServerError):
            raise cause from None
        raise
    except RayActorError as exc:
        raise Unavailable(f"{what} is lost: {type(exc).__name__}", **details) from None


class ActorClient:
    """Forwards method calls; our errors come back as themselves, a dead actor as Unavailable."""

    def __init__(self, handle: Any, what: str, **details: Any) -> None:
        self._handle = handle
        self._what = what
        self._details = details

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any) -> Any:
            return await call_actor(self._handle.call.remote(method, *args), self._what, **self._details)

        return call
