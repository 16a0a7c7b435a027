"""An in-memory sandbox for fast unit tests: the real path rules, input checks and caps; scripted shell and Python.

It never runs code: shell commands and cells are answered by the handlers a test passes in. The default handlers
echo (for tests that only need a call to go through); a `Scripted` handler answers what it was told and refuses
anything else with FakeCannotRun. Streamed calls give the answer's output as events, then the answer; background
processes live in memory (`sandbox._fake_processes`); the fake has no ports (501 `not_supported`).
tests/contract holds the fake and the Docker sandbox to the same behaviour.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Generic, TypeVar

from sandbox._fake_processes import FakeProcesses, FakeProgram, ProgramHandler, echo_program
from sandbox._ids import new_session_id
from sandbox._inputs import check_code_size, checked_timeout
from sandbox._output import cap_text
from sandbox._paths import workspace_relative
from sandbox.base import (
    FileEntry,
    PythonError,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxSpec,
    ShellResult,
)
from sandbox.config import SandboxConfig
from sandbox.errors import FakeCannotRun, FileTooLarge, InvalidPath, SandboxNotFound, WorkspaceFileNotFound
from sandbox.processes import ProcessLimits

__all__ = [
    "FakeBackend",
    "FakeProcesses",
    "FakeProgram",
    "FakeSandbox",
    "Scripted",
    "echo_program",
    "echo_python",
    "echo_shell",
]

OutputSink = Callable[[str, object], None]

ShellHandler = Callable[[str], ShellResult]
PythonHandler = Callable[[str], PythonResult]
Answer = TypeVar("Answer")


def echo_shell(command: str) -> ShellResult:
    """The default shell answer: exit code 0 and the command's own text (nothing runs)."""
    return ShellResult(exit_code=0, output=command, timed_out=False, truncated=False, cwd="/workspace")


def echo_python(code: str) -> PythonResult:
    """The default cell answer: status ok and the code's repr as the result (nothing runs)."""
    return PythonResult(status="ok", result=repr(code))


class Scripted(Generic[Answer]):
    """A handler that gives the answers it was told (`answers[text]`) and refuses any other text."""

    def __init__(self, what: str, answers: dict[str, Answer] | None = None) -> None:
        self.what = what
        self.answers: dict[str, Answer] = dict(answers or {})

    def __call__(self, text: str) -> Answer:
        """The scripted answer to `text`; FakeCannotRun when there is none."""
        try:
            return self.answers[text]
        except KeyError:
            raise FakeCannotRun(
                f"the fake sandbox runs no {self.what} and has no answer scripted for {text[:80]!r}"
            ) from None


class FakeSandbox(Sandbox):
    """Records every call; files live in a dict; inputs are checked and output capped like the real thing."""

    def __init__(
        self,
        info: SandboxInfo,
        *,
        shell: ShellHandler = echo_shell,
        python: PythonHandler = echo_python,
        max_file_bytes: int = SandboxConfig.max_file_bytes,
        output_limit: int = SandboxConfig.output_limit,
        max_code_bytes: int = SandboxConfig.max_code_bytes,
        programs: ProgramHandler = echo_program,
        process_limits: ProcessLimits | None = None,
    ) -> None:
        self._info = info
        self.processes = FakeProcesses(programs, process_limits)
        self._shell = shell
        self._python = python
        self.max_file_bytes = max_file_bytes
        self.output_limit = output_limit
        self.max_code_bytes = max_code_bytes
        self.files: dict[str, bytes] = {}
        self.mtimes: dict[str, float] = {}
        self.calls: builtins.list[tuple[str, str]] = []
        self.restarts = 0
        self.closed = False

    @property
    def info(self) -> SandboxInfo:
        """Where this sandbox lives and what it is."""
        return self._info

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        """The shell handler's answer to `command`, output capped as the guest daemon caps it."""
        check_code_size(command, "command", self.max_code_bytes)
        checked_timeout(timeout_s)
        self.calls.append(("shell", command))
        result = self._shell(command)
        output, cut = cap_text(result.output, self.output_limit)
        return replace(result, output=output, truncated=cut or result.truncated)

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        """The python handler's answer to `code`, its texts capped as the kernel connection caps them."""
        check_code_size(code, "code", self.max_code_bytes)
        checked_timeout(timeout_s)
        self.calls.append(("python", code))
        return _capped_cell(self._python(code), self.output_limit)

    async def shell_streaming(self, command: str, timeout_s: float, on_output: OutputSink) -> ShellResult:
        """`shell`, its output given to `on_output("stdout", line)` line by line before the answer."""
        result = await self.shell(command, timeout_s)
        for line in result.output.splitlines(keepends=True):
            on_output("stdout", line)
        return result

    async def python_streaming(self, code: str, timeout_s: float, on_output: OutputSink) -> PythonResult:
        """`python`, its stdout and stderr lines and its displays given to `on_output` before the answer."""
        result = await self.python(code, timeout_s)
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            for line in text.splitlines(keepends=True):
                on_output(stream, line)
        for item in result.display:
            on_output("display", item)
        return result

    async def interrupt(self, kind: str) -> None:
        """Record the interrupt (a fake call is over before anyone could interrupt it)."""
        self.calls.append(("interrupt", kind))

    async def restart_python(self) -> None:
        """Count the restart (the fake keeps no kernel state)."""
        self.restarts += 1

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        """Store `data` under the normalised path; refused where a directory or a file is in the way."""
        rel = workspace_relative(path)
        if len(data) > self.max_file_bytes:
            raise FileTooLarge(f"{len(data)} bytes is over the {self.max_file_bytes} byte cap", path=rel)
        if self._is_dir(rel):
            raise InvalidPath(f"{rel} is a directory", path=rel)
        parents = rel.split("/")[:-1]
        if any("/".join(parents[: i + 1]) in self.files for i in range(len(parents))):
            raise InvalidPath(f"a parent of {rel} is not a directory", path=rel)
        self.files[rel] = bytes(data)
        self.mtimes[rel] = time.time()
        return FileEntry(path=rel, size=len(data), is_dir=False, mtime=self.mtimes[rel])

    async def read_file(self, path: str) -> bytes:
        """The stored bytes; a directory or a missing file is refused as the guest daemon refuses it."""
        rel = workspace_relative(path)
        if rel in self.files:
            return self.files[rel]
        if self._is_dir(rel):
            raise InvalidPath(f"{rel} is a directory", path=rel)
        raise WorkspaceFileNotFound(f"no such file: {rel}", path=rel)

    async def list_files(self, path: str = "") -> builtins.list[FileEntry]:
        """The files and directories directly under `path`; a file or a missing directory is refused."""
        rel = workspace_relative(path, allow_root=True)
        if rel in self.files:
            raise InvalidPath(f"{rel} is not a directory", path=rel)
        if not self._is_dir(rel):
            raise WorkspaceFileNotFound(f"no such directory: {rel or '.'}", path=rel)
        prefix = f"{rel}/" if rel else ""
        entries: dict[str, FileEntry] = {}
        for name, data in self.files.items():
            if not name.startswith(prefix):
                continue
            head, _, rest = name[len(prefix) :].partition("/")
            entry_path = prefix + head
            mtime = self.mtimes.get(name, 0.0)
            if rest:  # a directory: as recent as the newest file below it
                known = entries.get(entry_path)
                mtime = max(mtime, known.mtime if known else 0.0)
                entries[entry_path] = FileEntry(entry_path, 0, True, mtime)
            else:
                entries[entry_path] = FileEntry(entry_path, len(data), False, mtime)
        return sorted(entries.values(), key=lambda e: e.path)

    async def close(self) -> None:
        """Mark the sandbox closed."""
        self.closed = True

    async def ping(self) -> dict[str, str]:
        """Always answers (a pooled fake is always alive)."""
        return {"status": "ok"}

    def set_owner(self, owner: str) -> None:
        """Hand a pooled fake to its tenant."""
        self._info = replace(self._info, owner=owner)

    def _is_dir(self, rel: str) -> bool:
        """Directories exist only as the parents of files (and the workspace root)."""
        return rel == "" or any(name.startswith(rel + "/") for name in self.files)


def _capped_cell(result: PythonResult, limit: int) -> PythonResult:
    """`result` with every text capped to `limit` bytes, as the kernel connection caps a real cell's."""
    cut = False

    def cap(text: str) -> str:
        nonlocal cut
        capped, was_cut = cap_text(text, limit)
        cut |= was_cut
        return capped

    error = result.error
    if error is not None:
        error = PythonError(error.ename, cap(error.evalue), [cap(line) for line in error.traceback])
    return replace(
        result,
        stdout=cap(result.stdout),
        stderr=cap(result.stderr),
        result=None if result.result is None else cap(result.result),
        error=error,
        truncated=result.truncated or cut,
    )


class FakeBackend(SandboxBackend):
    """Hands out FakeSandboxes; `sandbox_factory` lets a test choose the handlers."""

    def __init__(
        self, node_id: str = "fake", sandbox_factory: Callable[[SandboxInfo], FakeSandbox] | None = None
    ):
        self.node_id = node_id
        self._factory = sandbox_factory or FakeSandbox
        self.sandboxes: dict[str, FakeSandbox] = {}

    async def create(
        self, spec: SandboxSpec, session_id: str | None = None, *, pooled: bool = False
    ) -> FakeSandbox:
        """A new FakeSandbox from the factory, recorded under its session id (`pooled` changes nothing)."""
        info = SandboxInfo(
            session_id=session_id or new_session_id(),
            container_id="fake",
            owner=spec.owner,
            image=spec.image or "fake",
            node_id=self.node_id,
            network=spec.network,
            limits=spec.limits,
            created_at=time.time(),
            runtime=spec.runtime or "runc",
        )
        sandbox = self._factory(info)
        self.sandboxes[info.session_id] = sandbox
        return sandbox

    async def get(self, session_id: str) -> FakeSandbox:
        """The session's sandbox; SandboxNotFound when there is none."""
        try:
            return self.sandboxes[session_id]
        except KeyError:
            raise SandboxNotFound(f"no sandbox for session {session_id}", session_id=session_id) from None

    async def destroy(self, session_id: str) -> None:
        """Forget the session's sandbox (a no-op when it is gone)."""
        sandbox = self.sandboxes.pop(session_id, None)
        if sandbox is not None:
            await sandbox.close()

    async def list(self) -> builtins.list[SandboxInfo]:
        """Every sandbox handed out and not destroyed."""
        return [s.info for s in self.sandboxes.values()]

    async def close(self) -> None:
        """Destroy every sandbox."""
        for session_id in list(self.sandboxes):
            await self.destroy(session_id)
