"""The node lane: a replica calls the sandbox manager of its own node over a unix socket instead of Ray.

A Ray actor call costs the caller and the actor a few milliseconds of CPU each (task submission, gRPC,
serialization), several times what a shell `true` costs the sandbox. A replica that runs on the same node as
the manager sends the same method calls over a private unix socket instead:

- the manager's node actor opens the socket on first request (`LaneHost.lane_address`), in a directory only
  its user can enter, and hands out its path with a random token through one Ray call;
- a connection sends the token first (compared in constant time, before anything is unpickled), then
  length-prefixed pickled `(method, args)` frames, one call at a time; only `NodeClient` methods are served;
- `LaneHandle` stands in for the actor handle in `RayNodeClient`: `handle.shell.remote(...)` is a lane call,
  answered with the method's result or its error (our errors come back as themselves, as through Ray). A
  lane that cannot be reached falls back to the actor handle for good; a connection lost mid-call is the
  node's manager lost (`Unavailable`), as a lost actor is.

Both ends are the server's own processes under one user on one machine (the trust Ray's own workers have);
sandboxes never see the socket's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import pickle
import secrets
import struct
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from foundation.errors import Unavailable

__all__ = ["LaneAddress", "LaneClient", "LaneHandle", "LaneHost", "LaneServer", "lane_methods", "same_node"]

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
_TOKEN_BYTES = 32
MAX_FRAME_BYTES = 1 << 30
"""A frame larger than this ends the connection (file contents travel in frames: the file caps are far below)."""
IDLE_CONNECTIONS = 32
"""Connections a client keeps open between calls (more are opened while that many are busy)."""


@dataclass(frozen=True)
class LaneAddress:
    """Where a node's lane listens, its token, and the node it belongs to."""

    path: str
    token: bytes
    node_id: str


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    (size,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if size > MAX_FRAME_BYTES:
        raise ConnectionError(f"a lane frame of {size} bytes, over {MAX_FRAME_BYTES}")
    return pickle.loads(await reader.readexactly(size))


def _frame(value: Any) -> bytes:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


def _sendable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling, else a plain error that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _answer_frame(method: str, answer: tuple[bool, Any]) -> bytes:
    """The answer's frame; an answer that cannot be sent is the call's error (not a lost connection)."""
    try:
        frame = _frame(answer)
    except Exception as exc:  # lane-answers: unpicklable
        return _frame((False, RuntimeError(f"the answer of {method} cannot be sent: {type(exc).__name__}")))
    if len(frame) - _LENGTH.size > MAX_FRAME_BYTES:  # lane-answers: the caller would drop it as too large
        return _frame((False, RuntimeError(f"the answer of {method} is over {MAX_FRAME_BYTES} bytes")))
    return frame


class LaneServer:
    """Serves `target`'s methods named in `methods` over a unix socket of a private directory."""

    def __init__(self, target: Any, methods: frozenset[str]) -> None:
        self._target = target
        self._methods = methods
        self._token = secrets.token_bytes(_TOKEN_BYTES)
        self._dir = ""
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def path(self) -> str:
        """The socket's path (empty before `start`)."""
        return os.path.join(self._dir, "lane.sock") if self._dir else ""

    async def start(self, node_id: str) -> LaneAddress:
        """Listen (once); the address a replica of this node connects to."""
        if self._server is None:
            self._dir = tempfile.mkdtemp(prefix="tslane-")  # mode 0700: this user only
            self._server = await asyncio.start_unix_server(self._serve, path=self.path)
            os.chmod(self.path, 0o600)
        return LaneAddress(self.path, self._token, node_id)

    async def close(self) -> None:
        """Stop listening, end the connections and remove the socket."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            self._server = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self._dir)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            token = await asyncio.wait_for(reader.readexactly(_TOKEN_BYTES), 10)
            if not hmac.compare_digest(token, self._token):
                return
            while True:
                method, args = await _read_frame(reader)
                writer.write(_answer_frame(method, await self._answer(method, args)))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError, OSError):
            pass  # the caller went away (or never said the token): nothing to answer
        except Exception as exc:  # a frame that is not a call: log it, close the connection
            log.warning("node lane: dropped a connection after %s", type(exc).__name__)
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _answer(self, method: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        if method not in self._methods:
            return False, RuntimeError(f"the node lane serves no method {method!r}")
        try:
            return True, await getattr(self._target, method)(*args)
        except Exception as exc:
            return False, _sendable(exc)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the lane is closing
            # lane-answers: a method cancelled from within is its error, not the node lost (as through Ray)
            return False, RuntimeError(f"{method} was cancelled on the node: {exc}")


class LaneDown(ConnectionError):
    """The lane could not be reached (nothing was sent): the caller may use Ray instead."""


class LaneClient:
    """Calls a node's lane: one call at a time per connection, idle connections kept for the next."""

    def __init__(self, address: LaneAddress, what: str) -> None:
        self.address = address
        self._what = what
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """The method's result; its error raised as itself; LaneDown when nothing could be sent."""
        reader, writer = await self._connection()
        try:
            writer.write(_frame((method, args)))
            await writer.drain()
            ok, value = await _read_frame(reader)
        except BaseException as exc:
            writer.close()  # lost mid-call, or the caller gave up: the connection's state is unknown
            if isinstance(exc, (ConnectionError, asyncio.IncompleteReadError, OSError)):
                raise Unavailable(
                    f"{self._what} is lost: its lane closed during {method}", node_id=self.address.node_id
                ) from None
            raise
        self._release(reader, writer)
        if ok:
            return value
        raise value

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer = self._idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        try:
            reader, writer = await asyncio.open_unix_connection(self.address.path)
            writer.write(self.address.token)
        except OSError as exc:
            raise LaneDown(f"{self.address.path}: {exc}") from None
        return reader, writer

    def _release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._idle) < IDLE_CONNECTIONS and not reader.at_eof():
            self._idle.append((reader, writer))
        else:
            writer.close()

    def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop()[1].close()


class _LaneMethod:
    """`handle.<method>`: `.remote(*args)` is a lane call (or the actor's, once the lane is down)."""

    def __init__(self, owner: LaneHandle, method: str) -> None:
        self._owner = owner
        self._method = method

    def remote(self, *args: Any) -> Coroutine[Any, Any, Any]:
        return self._owner._call(self._method, args)

    def options(self, **options: Any) -> Any:
        return getattr(self._owner.actor, self._method).options(**options)


class LaneHandle:
    """Stands in for a node actor's handle: the lane's methods go over the lane, the rest to the actor."""

    def __init__(self, actor: Any, lane: LaneClient, methods: frozenset[str]) -> None:
        self.actor = actor
        self._lane: LaneClient | None = lane
        self._methods = methods

    @property
    def lane_up(self) -> bool:
        """Whether calls still go over the lane."""
        return self._lane is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._methods:
            return getattr(self.actor, name)
        return _LaneMethod(self, name)

    async def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        lane = self._lane
        if lane is not None:
            try:
                return await lane.call(method, args)
            except LaneDown as exc:
                log.info("node lane down (%s): calls go through Ray", exc)
                self._lane = None
                lane.close()
        return await getattr(self.actor, method).remote(*args)


class LaneHost:
    """Mixed into the node actor: `lane_address` opens the lane (once) and says where it is."""

    LANE_METHODS: frozenset[str] = frozenset()
    _lane_server: LaneServer | None = None

    async def lane_address(self) -> LaneAddress:
        """The node lane's address; it listens from the first call on."""
        if self._lane_server is None:
            self._lane_server = LaneServer(self, self.LANE_METHODS)
        return await self._lane_server.start(self._lane_node_id())

    def _lane_node_id(self) -> str:
        raise NotImplementedError

    async def shutdown(self) -> None:
        """Stop serving the lane, then shut the manager down."""
        if self._lane_server is not None:
            await self._lane_server.close()
        await super().shutdown()  # type: ignore[misc]


def lane_methods(protocol: type) -> frozenset[str]:
    """The public methods `protocol` and the project's protocols it extends declare: what a lane serves."""
    return frozenset(
        name
        for cls in protocol.__mro__
        if cls.__module__.startswith(("sandbox.", "toolserver.nodes."))
        for name, value in vars(cls).items()
        if not name.startswith("_") and callable(value)
    )


def same_node(address: LaneAddress, here: Callable[[], str]) -> bool:
    """Whether the lane is on this process's node (its socket path means nothing elsewhere)."""
    return address.node_id == here() and os.path.exists(address.path)
