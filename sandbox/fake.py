"""An in-memory sandbox for fast unit tests: real path rules and caps, scripted shell and Python.

It never runs code: shell commands and cells are answered by the handlers a test passes in.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable

from sandbox._ids import new_session_id
from sandbox._output import DEFAULT_OUTPUT_LIMIT, cap_text
from sandbox._paths import workspace_relative
from sandbox.base import (
    FileEntry,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxSpec,
    ShellResult,
)
from sandbox.errors import FileTooLarge, SandboxNotFound, WorkspaceFileNotFound

__all__ = ["FakeBackend", "FakeSandbox"]

ShellHandler = Callable[[str], ShellResult]
PythonHandler = Callable[[str], PythonResult]


def _echo_shell(command: str) -> ShellResult:
    return ShellResult(exit_code=0, output=command, timed_out=False, truncated=False, cwd="/workspace")


def _echo_python(code: str) -> PythonResult:
    return PythonResult(status="ok", result=repr(code))


class FakeSandbox(Sandbox):
    """Records every call; files live in a dict; output is capped like the real thing."""

    def __init__(
        self,
        info: SandboxInfo,
        *,
        shell: ShellHandler = _echo_shell,
        python: PythonHandler = _echo_python,
        max_file_bytes: int = 64 * 1024 * 1024,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> None:
        self._info = info
        self._shell = shell
        self._python = python
        self.max_file_bytes = max_file_bytes
        self.output_limit = output_limit
        self.files: dict[str, bytes] = {}
        self.calls: builtins.list[tuple[str, str]] = []
        self.restarts = 0
        self.closed = False

    @property
    def info(self) -> SandboxInfo:
        return self._info

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        self.calls.append(("shell", command))
        result = self._shell(command)
        output, cut = cap_text(result.output, self.output_limit)
        return ShellResult(result.exit_code, output, result.timed_out, cut or result.truncated, result.cwd)

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        self.calls.append(("python", code))
        return self._python(code)

    async def restart_python(self) -> None:
        self.restarts += 1

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        rel = workspace_relative(path)
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"file is larger than the {self.max_file_bytes} byte cap", path=rel)
        self.files[rel] = bytes(data)
        return FileEntry(path=rel, size=len(data), is_dir=False, mtime=time.time())

    async def read_file(self, path: str) -> bytes:
        rel = workspace_relative(path)
        if rel not in self.files:
            raise WorkspaceFileNotFound(f"no file {rel!r} in the workspace", path=rel)
        return self.files[rel]

    async def list_files(self, path: str = "") -> builtins.list[FileEntry]:
        rel = workspace_relative(path, allow_root=True)
        prefix = f"{rel}/" if rel else ""
        names: dict[str, FileEntry] = {}
        for name, data in self.files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix) :].partition("/")
            entry_path = prefix + head
            names[entry_path] = FileEntry(entry_path, 0 if rest else len(data), bool(rest), 0.0)
        return sorted(names.values(), key=lambda e: e.path)

    async def close(self) -> None:
        self.closed = True


class FakeBackend(SandboxBackend):
    """Hands out FakeSandboxes; `sandbox_factory` lets a test choose the handlers."""

    def __init__(
        self, node_id: str = "fake", sandbox_factory: Callable[[SandboxInfo], FakeSandbox] | None = None
    ):
        self.node_id = node_id
        self._factory = sandbox_factory or FakeSandbox
        self.sandboxes: dict[str, FakeSandbox] = {}

    async def create(self, spec: SandboxSpec, session_id: str | None = None) -> FakeSandbox:
        info = SandboxInfo(
            session_id=session_id or new_session_id(),
            container_id="fake",
            owner=spec.owner,
            image=spec.image or "fake",
            node_id=self.node_id,
            network=spec.network,
            limits=spec.limits,
            created_at=time.time(),
        )
        sandbox = self._factory(info)
        self.sandboxes[info.session_id] = sandbox
        return sandbox

    async def get(self, session_id: str) -> FakeSandbox:
        try:
            return self.sandboxes[session_id]
        except KeyError:
            raise SandboxNotFound(f"no sandbox for session {session_id}", session_id=session_id) from None

    async def destroy(self, session_id: str) -> None:
        sandbox = self.sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def list(self) -> builtins.list[SandboxInfo]:
        return [s.info for s in self.sandboxes.values()]

    async def close(self) -> None:
        for session_id in list(self.sandboxes):
            await self.destroy(session_id)
