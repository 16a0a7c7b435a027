"""One API call as data (`Request`), how its answer becomes a model or an error, and where the server is."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from toolserver.client.errors import error_for

__all__ = ["AsyncSender", "Request", "Sender", "decode", "default_connection", "headers_for", "retry_after"]

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """A call: method, path, body, and what the answer is parsed as (`None`: no body, `bytes`: raw)."""

    method: str
    path: str
    answer: Any
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    unwrap: str | None = None  # the key of the answer's one field to return (`{"sessions": [...]}` -> list)


class Sender(Protocol):
    """What the synchronous groups need of their client."""

    def send(self, request: Request[T]) -> T: ...

    def events(self, path: str) -> Iterator[tuple[str, str]]: ...


class AsyncSender(Protocol):
    """What the asynchronous groups need of their client."""

    async def send(self, request: Request[T]) -> T: ...

    def events(self, path: str) -> AsyncIterator[tuple[str, str]]: ...


def retry_after(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds, when the server sent one as a number."""
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def decode(request: Request[T], response: httpx.Response) -> T:
    """The answer as `request.answer` says, or the typed error of an error status."""
    if response.status_code >= 400:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text[:500]
        raise error_for(response.status_code, body, retry_after(response))
    if request.answer is None:
        return None  # type: ignore[return-value]  # T is None for these requests
    if request.answer is bytes:
        return response.content  # type: ignore[return-value]  # T is bytes for these requests
    data = response.json()
    if request.unwrap is not None:
        data = data[request.unwrap]
    if isinstance(request.answer, type) and issubclass(request.answer, BaseModel):
        return request.answer.model_validate(data)  # type: ignore[return-value]  # T is that model
    return _adapter(request.answer).validate_python(data)  # type: ignore[no-any-return]


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _adapter(answer: Any) -> TypeAdapter[Any]:
    try:
        return _ADAPTERS[answer]
    except (KeyError, TypeError):
        adapter: TypeAdapter[Any] = TypeAdapter(answer)
        _ADAPTERS[answer] = adapter
        return adapter


def default_connection(url: str | None = None, api_key: str | None = None) -> tuple[str, str | None]:
    """URL and key from arguments, else TOOLSERVER_URL / TOOLSERVER_API_KEY, else what `toolserver up` wrote."""
    home = Path(os.environ.get("TOOLSERVER_HOME", "~/.toolserver")).expanduser()
    if url is None:
        url = os.environ.get("TOOLSERVER_URL")
    if url is None and (home / "server.json").exists():
        url = json.loads((home / "server.json").read_text()).get("url")
    if api_key is None:
        api_key = os.environ.get("TOOLSERVER_API_KEY")
    if api_key is None and (home / "admin.key").exists():
        api_key = (home / "admin.key").read_text().strip()
    return (url or "http://127.0.0.1:8000").rstrip("/"), api_key


def headers_for(api_key: str | None) -> dict[str, str]:
    """The request headers for a key."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}
