"""The node manager's streamed shell commands and cells: `SessionStreams` over each session's sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from typing import Any, TypeVar

from foundation.errors import ToolServerError, UserError
from sandbox._inputs import check_code_size, checked_timeout
from sandbox.base import Sandbox
from sandbox.config import SandboxConfig
from sandbox.streams import SessionStreams, StreamKind, StreamRead, StreamRun, StreamRuns

__all__ = ["ManagerStreams"]

Result = TypeVar("Result")


class ManagerStreams(SessionStreams):
    """Mixed into `SandboxManager`: a run is a task of the manager's loop, fed by the sandbox's output sink."""

    config: SandboxConfig

    async def _session(self, session_id: str) -> Sandbox:
        raise NotImplementedError

    async def _guarded(self, session_id: str, op: Awaitable[Result]) -> Result:
        raise NotImplementedError

    @property
    def _stream_runs(self) -> StreamRuns:
        runs: StreamRuns | None = self.__dict__.get("_streams")
        if runs is None:
            runs = self.__dict__["_streams"] = StreamRuns()
        return runs

    async def stream_start(
        self, session_id: str, kind: StreamKind, source: str, timeout_s: float = 30.0
    ) -> str:
        if kind not in ("shell", "python"):
            raise UserError("a stream runs 'shell' or 'python'", field="kind")
        check_code_size(source, "command" if kind == "shell" else "code", self.config.max_code_bytes)
        timeout_s = checked_timeout(timeout_s)
        sandbox = await self._session(session_id)
        streaming = getattr(sandbox, f"{kind}_streaming", None)
        if streaming is None:
            raise UserError(f"{type(sandbox).__name__} does not stream output")
        run = self._stream_runs.new(session_id, kind, self.config.output_limit)
        run.task = asyncio.create_task(self._run(run, streaming(source, timeout_s, run.add)))
        return run.id

    async def _run(self, run: StreamRun, op: Awaitable[Any]) -> None:
        try:
            result = await self._guarded(run.session_id, op)
        except ToolServerError as exc:
            run.finish(None, {**exc.to_dict(), "status": exc.status})
        except Exception as exc:  # reported to the reader, never raised into the loop
            run.finish(None, {"type": "internal_error", "message": type(exc).__name__, "status": 500})
        else:
            run.finish(dataclasses.asdict(result))

    async def stream_read(
        self, session_id: str, run_id: str, offset: int = 0, wait_s: float = 0.0
    ) -> StreamRead:
        return await self._stream_runs.get(session_id, run_id).read(offset, wait_s)

    async def stream_cancel(self, session_id: str, run_id: str) -> None:
        run = self._stream_runs.get(session_id, run_id)
        if run.ended_at is None:
            interrupt = getattr(await self._session(session_id), "interrupt", None)
            if interrupt is not None:
                await interrupt(run.kind)
