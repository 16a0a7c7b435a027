"""Host side of the guest daemon's background processes (`sandbox/_guest/sbxd_background.py`).

Every reply comes from code the sandbox's user controls, so it is checked like the rest of the guest protocol:
types, sizes, and output chunks that must add up to the payload that came with them.
"""

from __future__ import annotations

import builtins
from typing import Any

from sandbox._guest_client import GuestClient, typed
from sandbox.errors import SandboxError
from sandbox.processes import (
    MAX_OUTPUT_WAIT_S,
    MAX_STDIN_BYTES,
    SIGNALS,
    OutputChunk,
    Processes,
    ProcessInfo,
    ProcessLimits,
    ProcessOutput,
    StdinTooLarge,
)

__all__ = ["GuestProcesses"]

READ_BYTES = 1 << 20  # one output read; a follower reads on
MAX_CHUNKS = 4096  # per reply: the daemon is the sandbox's, and empty chunks cost objects
MAX_LISTED = 512


class GuestProcesses(Processes):
    """A sandbox's background processes, through its guest daemon."""

    def __init__(self, guest: GuestClient, limits: ProcessLimits) -> None:
        self._guest = guest
        self._limits = limits

    async def start(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> ProcessInfo:
        request: dict[str, Any] = {
            "op": "proc_start",
            "command": command,
            "stdin": stdin,
            "max_processes": self._limits.max_running,
            "buffer": self._limits.output_bytes,
        }
        if cwd is not None:
            request["cwd"] = cwd
        if env:
            request["env"] = env
        reply, _ = await self._guest.call(request)
        return _info(reply)

    async def list(self) -> builtins.list[ProcessInfo]:
        reply, _ = await self._guest.call({"op": "proc_list"})
        listed = reply.get("processes")
        if not isinstance(listed, builtins.list) or len(listed) > MAX_LISTED:
            raise SandboxError("malformed process list from the guest daemon")
        return [_info(p) for p in listed]

    async def get(self, pid: int) -> ProcessInfo:
        reply, _ = await self._guest.call({"op": "proc_get", "pid": pid})
        return _info(reply)

    async def output(self, pid: int, offset: int = 0, wait_s: float = 0.0) -> ProcessOutput:
        wait_s = min(max(wait_s, 0.0), MAX_OUTPUT_WAIT_S)
        request = {"op": "proc_output", "pid": pid, "offset": offset, "wait": wait_s, "max_bytes": READ_BYTES}
        reply, payload = await self._guest.call(
            request, timeout_s=self._guest.io_timeout_s + wait_s, max_payload=READ_BYTES
        )
        try:
            chunks, at = [], 0
            if not isinstance(reply["chunks"], list) or len(reply["chunks"]) > MAX_CHUNKS:
                raise TypeError(f"more than {MAX_CHUNKS} output chunks in one reply")
            for raw in reply["chunks"]:
                size = typed(raw["size"], int)
                stream = typed(raw["stream"], str)
                if stream not in ("stdout", "stderr") or size < 0 or at + size > len(payload):
                    raise TypeError("an output chunk that does not fit the payload")
                data = payload[at : at + size].decode("utf-8", "replace")
                chunks.append(OutputChunk(offset=typed(raw["offset"], int), stream=stream, data=data))  # type: ignore[arg-type]
                at += size
            if at != len(payload):
                raise TypeError("output chunks do not add up to the payload")
            next_offset = typed(reply["next_offset"], int)
            first = chunks[0].offset if chunks else next_offset
            return ProcessOutput(
                chunks=chunks,
                next_offset=next_offset,
                done=typed(reply["done"], bool),
                process=_info(reply["process"]),
                dropped=max(0, first - offset),
            )
        except (KeyError, TypeError) as exc:
            raise SandboxError(f"malformed process output from the guest daemon: {exc}") from None

    async def write_stdin(self, pid: int, data: bytes, eof: bool = False) -> int:
        if len(data) > MAX_STDIN_BYTES:
            raise StdinTooLarge(f"{len(data)} bytes of stdin is over the {MAX_STDIN_BYTES} byte cap")
        reply, _ = await self._guest.call({"op": "proc_stdin", "pid": pid, "eof": eof}, data)
        try:
            return int(typed(reply["written"], int))
        except (KeyError, TypeError) as exc:
            raise SandboxError(f"malformed stdin reply from the guest daemon: {exc}") from None

    async def signal(self, pid: int, signal: str) -> ProcessInfo:
        if signal not in SIGNALS:
            raise ValueError(f"signal must be one of {', '.join(SIGNALS)}")
        reply, _ = await self._guest.call({"op": "proc_signal", "pid": pid, "signal": signal})
        return _info(reply)


def _info(raw: Any) -> ProcessInfo:
    try:
        status = typed(raw["status"], str)
        if status not in ("running", "exited"):
            raise TypeError(f"unknown status {status!r}")
        return ProcessInfo(
            pid=typed(raw["pid"], int),
            command=typed(raw["command"], str),
            cwd=typed(raw["cwd"], str),
            status=status,  # type: ignore[arg-type]
            exit_code=typed(raw.get("exit_code"), int, optional=True),
            signal=typed(raw.get("signal"), str, optional=True),
            started_at=float(typed(raw["started_at"], float, int_ok=True)),
            ended_at=_seconds(raw.get("ended_at")),
            stdin=typed(raw["stdin"], bool),
            output_start=typed(raw.get("output_start", 0), int),
            output_end=typed(raw.get("output_end", 0), int),
        )
    except (KeyError, TypeError) as exc:
        raise SandboxError(f"malformed process from the guest daemon: {exc}") from None


def _seconds(value: Any) -> float | None:
    return None if value is None else float(typed(value, float, int_ok=True))
