"""envd's process service (Connect), over the background processes of the caller's session.

`commands.run` starts a process in the sandbox's guest daemon and streams its output as it comes (the
guest keeps it in a ring buffer; a client that goes away leaves the process running, and `connect`
follows it again). Processes run under bash as the sandbox's non-root user; PTYs and tags are not offered.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb as pb
from protobuf import Oneof

from toolserver.e2b._auth import KeyCheck, sandbox_secret
from toolserver.e2b._limits import stream_limits_of
from toolserver.e2b._rpc import rpc_caller, rpc_error
from toolserver.service.processes import ProcessService

__all__ = ["EnvdProcess"]

WAIT_S = 10.0
_SIGNALS = {pb.Signal.SIGKILL: "KILL", pb.Signal.SIGTERM: "TERM"}
_STATUS = {"KILL": "killed", "TERM": "terminated", "INT": "interrupt", "HUP": "hangup", "QUIT": "quit"}
_SHELLS = ("/bin/bash", "bash", "/bin/sh", "sh", "/usr/bin/bash")


def _command(config: pb.ProcessConfig | None) -> str:
    """The shell command a ProcessConfig stands for (the SDK sends `/bin/bash -l -c CMD`)."""
    if config is None or not config.cmd:
        raise ConnectError(Code.INVALID_ARGUMENT, "process.cmd is required")
    args = list(config.args)
    if config.cmd in _SHELLS and len(args) >= 2 and args[-2] == "-c":
        return args[-1]
    return shlex.join([config.cmd, *args])


def _secret(ctx: Any) -> str:
    return sandbox_secret({str(k).lower(): str(v) for k, v in ctx.request_headers.items()})


def _pid(selector: pb.ProcessSelector | None) -> int:
    if selector is None or selector.selector is None:
        raise ConnectError(Code.INVALID_ARGUMENT, "process selector is required")
    if selector.selector.field != "pid":
        raise ConnectError(Code.NOT_FOUND, "processes are selected by pid here (tags are not kept)")
    return int(selector.selector.value)


def _event(kind: str, value: Any) -> pb.ProcessEvent:
    return pb.ProcessEvent(event=Oneof(kind, value))  # type: ignore[arg-type]


def _end(info: Any) -> pb.ProcessEvent:
    if info.signal:
        end = pb.ProcessEvent.EndEvent(
            exit_code=-1, exited=False, status=f"signal: {_STATUS.get(info.signal, info.signal.lower())}"
        )
    else:
        code = int(info.exit_code or 0)
        end = pb.ProcessEvent.EndEvent(exit_code=code, exited=True, status=f"exit status {code}")
    return _event("end", end)


class EnvdProcess:
    """`process.Process`: start, connect, list, send input, close stdin, signal."""

    def __init__(self, svc: Any, state: Any, records: Any) -> None:
        self.svc, self.state, self.records = svc, state, records
        self.processes = ProcessService(svc.sessions)

    async def list(self, request: pb.ListRequest, ctx: Any) -> pb.ListResponse:
        who, sandbox_id = await rpc_caller(self.svc.auth, ctx)
        try:
            infos = await self.processes.list(who, sandbox_id)
        except Exception as exc:
            raise rpc_error(exc) from None
        return pb.ListResponse(
            processes=[
                pb.ProcessInfo(
                    config=pb.ProcessConfig(cmd="/bin/bash", args=["-l", "-c", p.command], cwd=p.cwd),
                    pid=p.pid,
                )
                for p in infos
                if p.status == "running"
            ]
        )

    async def start(self, request: pb.StartRequest, ctx: Any) -> AsyncIterator[pb.StartResponse]:
        who, sandbox_id = await rpc_caller(self.svc.auth, ctx)
        config = request.process
        command = _command(config)
        try:
            envs = {**(await self.records.get(who, sandbox_id)).envs, **dict(config.envs if config else {})}
            cwd = config.cwd if config is not None and config.has_field("cwd") and config.cwd else None
            stdin = bool(request.stdin) if request.has_field("stdin") else True
            info = await self.processes.start(who, sandbox_id, command, cwd, envs or None, stdin)
        except Exception as exc:
            raise rpc_error(exc) from None
        yield pb.StartResponse(event=_event("start", pb.ProcessEvent.StartEvent(pid=info.pid)))
        async for event in self._follow(who, sandbox_id, info.pid, 0, _secret(ctx)):
            yield pb.StartResponse(event=event)

    async def connect(self, request: pb.ConnectRequest, ctx: Any) -> AsyncIterator[pb.ConnectResponse]:
        who, sandbox_id = await rpc_caller(self.svc.auth, ctx)
        pid = _pid(request.process)
        try:
            info = await self.processes.get(who, sandbox_id, pid)
        except Exception as exc:
            raise rpc_error(exc) from None
        yield pb.ConnectResponse(event=_event("start", pb.ProcessEvent.StartEvent(pid=pid)))
        async for event in self._follow(who, sandbox_id, pid, info.output_end, _secret(ctx)):
            yield pb.ConnectResponse(event=event)

    async def _follow(
        self, who: Any, sandbox_id: str, pid: int, offset: int, secret: str
    ) -> AsyncIterator[pb.ProcessEvent]:
        """Output events from `offset` until the process ends (or the stream's lifetime is over)."""
        limits = stream_limits_of(self.state)
        key = KeyCheck(self.svc.auth, secret)
        try:
            with limits.hold(who.namespace):
                deadline = time.monotonic() + limits.max_stream_s
                while time.monotonic() < deadline:
                    if not await key.valid():
                        raise ConnectError(Code.UNAUTHENTICATED, "the stream's API key was revoked")
                    asked = time.monotonic()
                    out = await self.processes.output(who, sandbox_id, pid, offset, WAIT_S)
                    for chunk in out.chunks:
                        data = pb.ProcessEvent.DataEvent(output=Oneof(chunk.stream, chunk.data.encode()))  # type: ignore[arg-type]
                        yield _event("data", data)
                    offset = out.next_offset
                    if out.done:
                        yield _end(out.process)
                        return
                    if not out.chunks:
                        yield _event("keepalive", pb.ProcessEvent.KeepAlive())
                        if time.monotonic() - asked < 0.05:
                            await asyncio.sleep(0.2)  # an answer that did not wait: pace the loop
        except ConnectError:
            raise
        except Exception as exc:
            raise rpc_error(exc) from None

    async def _call(self, ctx: Any, call: Callable[[Any, str], Any]) -> None:
        who, sandbox_id = await rpc_caller(self.svc.auth, ctx)
        try:
            await call(who, sandbox_id)
        except Exception as exc:
            raise rpc_error(exc) from None

    async def send_input(self, request: pb.SendInputRequest, ctx: Any) -> pb.SendInputResponse:
        pid = _pid(request.process)
        given = request.input.input if request.input is not None else None
        data = bytes(given.value) if given is not None else b""
        await self._call(ctx, lambda who, sid: self.processes.write_stdin(who, sid, pid, data))
        return pb.SendInputResponse()

    async def close_stdin(self, request: pb.CloseStdinRequest, ctx: Any) -> pb.CloseStdinResponse:
        pid = _pid(request.process)
        await self._call(ctx, lambda who, sid: self.processes.write_stdin(who, sid, pid, b"", eof=True))
        return pb.CloseStdinResponse()

    async def send_signal(self, request: pb.SendSignalRequest, ctx: Any) -> pb.SendSignalResponse:
        pid = _pid(request.process)
        name = _SIGNALS.get(request.signal)
        if name is None:
            raise ConnectError(Code.INVALID_ARGUMENT, f"signal {request.signal} is not supported")
        await self._call(ctx, lambda who, sid: self.processes.signal(who, sid, pid, name))
        return pb.SendSignalResponse()

    async def stream_input(
        self, request: AsyncIterator[pb.StreamInputRequest], ctx: Any
    ) -> pb.StreamInputResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "StreamInput is not supported: use SendInput")

    async def update(self, request: pb.UpdateRequest, ctx: Any) -> pb.UpdateResponse:
        raise ConnectError(Code.UNIMPLEMENTED, "PTYs are not supported by this server")
