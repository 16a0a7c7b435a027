"""Call a Ray actor's generic `call(method, *args)` as if it were a local async object."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError

from toolserver.errors import ToolServerError, Unavailable

__all__ = ["ActorClient"]


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
            try:
                return await self._handle.call.remote(method, *args)
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, ToolServerError):
                    raise cause from None
                raise
            except (ActorDiedError, ActorUnavailableError) as exc:
                raise Unavailable(f"{self._what} is lost: {type(exc).__name__}", **self._details) from None

        return call
