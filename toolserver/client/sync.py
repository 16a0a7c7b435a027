"""The synchronous client: `Client`, its sessions and its groups of operations."""

from __future__ import annotations

import builtins
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import httpx
from httpx_sse import connect_sse

from toolserver import api
from toolserver.client import live
from toolserver.client._ops import Ops
from toolserver.client._request import Request, decode, default_connection, headers_for
from toolserver.client._retry import RetryPolicy
from toolserver.client.sync_groups import Agents, Environments, Humans, Keys, Memory, Runs, Secrets, Tools

__all__ = ["Client", "Session"]

T = TypeVar("T")


class Client:
    """A connection to a tool server; URL and key default to TOOLSERVER_URL / TOOLSERVER_API_KEY or `toolserver up`'s."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, self.api_key = default_connection(url, api_key)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=self.url, headers=headers_for(self.api_key), timeout=timeout_s, transport=transport
        )
        self.tools = Tools(self)
        self.agents = Agents(self)
        self.runs = Runs(self)
        self.humans = Humans(self)
        self.memory = Memory(self)
        self.environments = Environments(self)
        self.keys = Keys(self)
        self.secrets = Secrets(self)

    def send(self, request: Request[T]) -> T:
        """Send one request (retried as `retry` says) and return its typed answer."""
        for attempt in self.retry.retrying():
            with attempt:
                response = self._http.request(
                    request.method,
                    request.path,
                    json=request.json,
                    params=request.params,
                    content=request.content,
                )
                return decode(request, response)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def events(self, path: str) -> Iterator[tuple[str, str]]:
        """(event, raw data) of one server-sent-event stream at `path`; an error status raises its ApiError."""
        with connect_sse(self._http, "GET", path, timeout=None) as source:
            if source.response.status_code >= 400:
                source.response.read()
                decode(Request("GET", path, None), source.response)
            for sse in source.iter_sse():
                yield sse.event, sse.data

    def health(self) -> api.Health:
        """The server's health: nodes, sandboxes running, pool size."""
        return self.send(Ops.health())

    def session(
        self,
        image: str | None = None,
        limits: dict[str, Any] | None = None,
        network: str | None = None,
        ttl_s: float | None = None,
        runtime: str | None = None,
        keep: bool = False,
        egress: Sequence[str] | None = None,
    ) -> Session:
        """A new sandbox session; as a context manager it is deleted on exit unless `keep`.

        `egress` (names, `*.domains`, either with `:port`) gives it network "egress": only those, through its
        node's proxy.
        """
        info = self.send(Ops.create_session(image, limits, network, ttl_s, runtime, egress))
        return Session(self, info, keep=keep)

    def attach(self, session_id: str) -> Session:
        """A handle on an existing session (kept on exit)."""
        return Session(self, self.send(Ops.session(session_id)), keep=True)

    def sessions(self) -> builtins.list[api.Session]:
        """The caller's sessions."""
        return self.send(Ops.sessions())

    def fork(self, snapshot_id: str, count: int = 1, ttl_s: float | None = None) -> builtins.list[Session]:
        """`count` new sessions (1-10), each with its own copy of the snapshot's files (kept on exit)."""
        forks = self.send(Ops.fork(snapshot_id, count, ttl_s))
        return [Session(self, info, keep=True) for info in forks.forks]

    def snapshots(self) -> builtins.list[api.Snapshot]:
        """The caller's snapshots."""
        return self.send(Ops.snapshots())

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete one of the caller's snapshots (the sessions forked from it keep their files)."""
        self.send(Ops.delete_snapshot(snapshot_id))

    def audit(self, limit: int = 100) -> builtins.list[api.AuditEntry]:
        """The caller's most recent tool calls."""
        return self.send(Ops.audit(limit))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Files:
    """The files of a session's workspace."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def write(self, path: str, data: bytes | str) -> api.FileEntry:
        """Write `data` (text is UTF-8) to `path` in the workspace, creating parent directories."""
        raw = data.encode() if isinstance(data, str) else data
        return self._session.client.send(Ops.write_file(self._session.id, path, raw))

    def read(self, path: str) -> bytes:
        """The bytes of a workspace file."""
        return self._session.client.send(Ops.read_file(self._session.id, path))

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """A workspace file as text."""
        return self.read(path).decode(encoding)

    def list(self, dir: str = "") -> builtins.list[api.FileEntry]:
        """The entries of a workspace directory (its root by default)."""
        return self._session.client.send(Ops.list_files(self._session.id, dir))


class Session:
    """One sandbox session: its persistent shell and kernel, its files, and the tools that run in it."""

    def __init__(self, client: Client, info: api.Session, keep: bool = False) -> None:
        self.client = client
        self.info = info
        self.id = info.id
        self.keep = keep
        self.files = Files(self)
        self.processes = live.Processes(self)
        self.ports = live.Ports(self)

    def shell(
        self,
        command: str,
        timeout_s: float = 30.0,
        on_stdout: live.TextSink | None = None,
        on_stderr: live.TextSink | None = None,
    ) -> api.ShellResult:
        """Run `command` in the session's bash; `cd` and `export` carry over to the next call.

        With `on_stdout` (or `on_stderr`) the output is streamed to it as it comes; the answer is the same.
        """
        if on_stdout is None and on_stderr is None:
            return self.client.send(Ops.shell(self.id, command, timeout_s))
        events = self.shell_events(command, timeout_s)
        return api.ShellResult.model_validate(live.deliver(events, on_stdout, on_stderr))

    def shell_events(
        self, command: str, timeout_s: float = 30.0, cancel_on_disconnect: bool = False
    ) -> Iterator[live.OutputEvent]:
        """`shell` as its stream of events: `stdout` text as it comes, then `result` (the ShellResult's fields)."""
        body = {"command": command, "timeout_s": timeout_s, "cancel_on_disconnect": cancel_on_disconnect}
        return live.stream_call(self, "shell", body)

    def python(
        self,
        code: str,
        timeout_s: float = 30.0,
        on_stdout: live.TextSink | None = None,
        on_stderr: live.TextSink | None = None,
    ) -> api.PythonResult:
        """Run `code` in the session's IPython kernel; variables carry over (streamed like `shell`)."""
        if on_stdout is None and on_stderr is None:
            return self.client.send(Ops.python(self.id, code, timeout_s))
        events = self.python_events(code, timeout_s)
        return api.PythonResult.model_validate(live.deliver(events, on_stdout, on_stderr))

    def python_events(
        self, code: str, timeout_s: float = 30.0, cancel_on_disconnect: bool = False
    ) -> Iterator[live.OutputEvent]:
        """`python` as its stream: `stdout`, `stderr` and `display` events, then `result`."""
        body = {"code": code, "timeout_s": timeout_s, "cancel_on_disconnect": cancel_on_disconnect}
        return live.stream_call(self, "python", body)

    def egress(self) -> api.EgressReport:
        """What the session's egress proxy let through and refused (network "egress": its allow-list)."""
        return self.client.send(Ops.egress(self.id))

    def restart_python(self) -> None:
        """A fresh kernel (variables are gone; files stay)."""
        self.client.send(Ops.restart_python(self.id))

    def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> api.ToolCallResult | api.WaitingHuman:
        """Call a tool with this session as its sandbox."""
        return self.client.send(Ops.call_tool(name, arguments, self.id))

    def refresh(self) -> api.Session:
        """The session's current record (status, expiry)."""
        self.info = self.client.send(Ops.session(self.id))
        return self.info

    def pause(self) -> api.Session:
        """Stop the session's container, keeping its files (and its memory under runsc); `info.kept` says what."""
        self.info = self.client.send(Ops.pause_session(self.id))
        return self.info

    def resume(self) -> api.Session:
        """Bring a paused session back (any call does it too); `info.resumed` says what came back."""
        self.info = self.client.send(Ops.resume_session(self.id))
        return self.info

    def snapshot(self) -> api.Snapshot:
        """Keep a copy of the session's files on its node, to fork new sessions from (`Client.fork`)."""
        return self.client.send(Ops.create_snapshot(self.id))

    def delete(self) -> None:
        """Destroy the session and its container."""
        self.client.send(Ops.delete_session(self.id))

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.keep:
            self.delete()
