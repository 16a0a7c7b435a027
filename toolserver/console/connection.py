"""Which server and key a browser tab talks with, and the server's errors as messages a page can show."""

from __future__ import annotations

import functools
import inspect
import posixpath
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from toolserver.client import ApiError, Client, default_connection

__all__ = ["Connection", "NoKey", "error_message", "guarded", "reported"]

T = TypeVar("T")


@dataclass
class Connection:
    """The server's URL, the key given when the console started (if any), and one SDK client per key."""

    url: str
    default_key: str | None = None
    timeout_s: float = 120.0
    _clients: dict[str, Client] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _scratch: Path | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls, url: str | None = None, api_key: str | None = None) -> Connection:
        """URL and key as the CLI finds them: arguments, TOOLSERVER_URL / TOOLSERVER_API_KEY, ~/.toolserver."""
        found_url, found_key = default_connection(url, api_key)
        return cls(found_url, found_key)

    def key_for(self, tab_key: str | None) -> str:
        """The key a tab uses: the one it entered, else the console's; NoKey when there is none."""
        key = (tab_key or "").strip() or self.default_key
        if not key:
            raise NoKey("enter an API key at the top of the page first")
        return key

    def has_key(self, tab_key: str | None) -> bool:
        """Whether a tab has a key to use (its own or the console's)."""
        return bool((tab_key or "").strip() or self.default_key)

    def client(self, tab_key: str | None) -> Client:
        """The SDK client of a tab's key (made once per key, shared by the tabs that use it)."""
        key = self.key_for(tab_key)
        with self._lock:
            if key not in self._clients:
                self._clients[key] = Client(self.url, key, timeout_s=self.timeout_s)
            return self._clients[key]

    def scratch_file(self, name: str, data: bytes) -> str:
        """A local copy of a workspace file for the browser (gradio serves files, not bytes in memory)."""
        with self._lock:
            if self._scratch is None:
                self._scratch = Path(tempfile.mkdtemp(prefix="toolserver-console-"))
            folder = self._scratch / uuid.uuid4().hex
        folder.mkdir()
        local = folder / (posixpath.basename(name.rstrip("/")) or "file")
        local.write_bytes(data)
        return str(local)

    def close(self) -> None:
        """Close every client's connection pool and remove the local copies of files."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._scratch is not None:
                shutil.rmtree(self._scratch, ignore_errors=True)
                self._scratch = None


class NoKey(Exception):
    """The tab has no key and the console was started without one."""


def error_message(exc: BaseException, url: str = "") -> str:
    """What a person reads for a failure: the server's own message, never a traceback."""
    if isinstance(exc, ApiError):
        where = f" ({exc.field})" if exc.field else ""
        return f"{exc.status_code} {exc.error_type}: {exc}{where}"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach the tool server at {url or 'its URL'} ({exc}); is `toolserver up` running?"
    if isinstance(exc, NoKey):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def reported(url: str = "") -> Iterator[None]:
    """Turn a server error inside the block into a gradio error whose text is the server's message."""
    import gradio as gr

    try:
        yield
    except gr.Error:
        raise
    except (ApiError, httpx.TransportError, NoKey) as exc:
        raise gr.Error(error_message(exc, url)) from None


def guarded(url: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    """`handler` (a function or a generator) with server errors shown as the server's message."""
    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with reported(url):
                yield from handler(*args, **kwargs)

        return stream

    @functools.wraps(handler)
    def call(*args: Any, **kwargs: Any) -> Any:
        with reported(url):
            return handler(*args, **kwargs)

    return call
