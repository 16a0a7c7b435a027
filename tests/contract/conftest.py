"""The sandbox contract: the same test functions against the fake, the fake behind the manager, and Docker.

`subject` is parametrized over the implementations of `SandboxOps`; `backend` over those of `SandboxBackend`.
The Docker parameters carry the `integration` and `docker` marks of tests/integration, so `-m "not docker"` runs
the fast half. The fake runs no code: it is told what a command prints (`Subject.shell_prints`), and a test
marked `runs_code` (shell state, exit codes, timeouts, kernel state) must end in FakeCannotRun on it, so the
fake refuses what it cannot do instead of pretending.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.base import (
    FileEntry,
    PythonResult,
    SandboxBackend,
    SandboxInfo,
    SandboxOps,
    SandboxSpec,
    SessionOps,
    ShellResult,
)
from sandbox.config import SandboxConfig
from sandbox.errors import FakeCannotRun
from sandbox.fake import FakeBackend, FakeSandbox, Scripted
from sandbox.manager import SandboxManager

# Small caps, so that the tests that reach them stay quick.
OUTPUT_LIMIT = 4096
MAX_FILE_BYTES = 256 * 1024
MAX_CODE_BYTES = 64 * 1024

DOCKER = pytest.param("docker", marks=[pytest.mark.integration, pytest.mark.docker])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "runs_code: needs code to really run; on the fake the test must end in FakeCannotRun"
    )


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, Any, Any]:
    """A `runs_code` test on a fake must be refused with FakeCannotRun; one that gets through is a failure."""
    callspec = getattr(pyfuncitem, "callspec", None)
    kind = callspec.params.get("subject") if callspec is not None else None
    if pyfuncitem.get_closest_marker("runs_code") is None or kind == "docker":
        return (yield)
    try:
        yield
    except FakeCannotRun:
        return True
    pytest.fail(f"the {kind} sandbox went through a test that needs code to run: it pretended")


@dataclass
class Subject:
    """One implementation of SandboxOps under test (its caps are this module's constants)."""

    kind: str
    sandbox: SandboxOps
    script: Scripted[ShellResult] | None = None  # the fake's shell answers
    cells: Scripted[PythonResult] | None = None  # the fake's cell answers

    def shell_prints(self, command: str, output: str) -> None:
        """Tell a fake what `command` prints (a real sandbox runs it)."""
        if self.script is not None:
            self.script.answers[command] = ShellResult(0, output, False, False, "/workspace")

    def cell_prints(self, code: str, stdout: str) -> None:
        """Tell a fake what a cell prints (a real sandbox runs it)."""
        if self.cells is not None:
            self.cells.answers[code] = PythonResult(status="ok", stdout=stdout)


class _SessionView(SandboxOps):
    """One session of a SessionOps (the manager) seen as SandboxOps."""

    def __init__(self, ops: SessionOps, session_id: str) -> None:
        self._ops = ops
        self._id = session_id

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        return await self._ops.shell(self._id, command, timeout_s)

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        return await self._ops.python(self._id, code, timeout_s)

    async def restart_python(self) -> None:
        await self._ops.restart_python(self._id)

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        return await self._ops.write_file(self._id, path, data)

    async def read_file(self, path: str) -> bytes:
        return await self._ops.read_file(self._id, path)

    async def list_files(self, path: str = "") -> list[FileEntry]:
        return await self._ops.list_files(self._id, path)


def _scripted_fakes() -> tuple[FakeBackend, Scripted[ShellResult], Scripted[PythonResult]]:
    script: Scripted[ShellResult] = Scripted("shell command")
    cells: Scripted[PythonResult] = Scripted("Python cell")

    def make(info: SandboxInfo) -> FakeSandbox:
        return FakeSandbox(
            info,
            shell=script,
            python=cells,
            max_file_bytes=MAX_FILE_BYTES,
            output_limit=OUTPUT_LIMIT,
            max_code_bytes=MAX_CODE_BYTES,
        )

    return FakeBackend("contract", sandbox_factory=make), script, cells


def _config(**overrides: Any) -> SandboxConfig:
    options: dict[str, Any] = {
        "pool_size": 0,
        "node_id": "n1",
        "instance_id": f"contract-{secrets.token_hex(4)}",
        "output_limit": OUTPUT_LIMIT,
        "max_file_bytes": MAX_FILE_BYTES,
        "max_code_bytes": MAX_CODE_BYTES,
    }
    return SandboxConfig(**(options | overrides))


@pytest.fixture(scope="session")
def docker_backend(sandbox_image: str) -> Iterator[SandboxBackend]:
    """One Docker backend for the run (each test still gets a fresh container); whatever is left goes after.

    A plain fixture, so that `subject` can ask for it only for its Docker parameter (an async fixture cannot
    be fetched from inside another); the tests destroy their sandboxes, so the closing loop holds none.
    """
    from sandbox.docker import DockerBackend

    backend = DockerBackend(_config(image=sandbox_image, ready_timeout_s=60))
    yield backend
    asyncio.run(backend.close())


@pytest.fixture(params=["fake", "fake-via-manager", DOCKER])
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    """A fresh sandbox of each implementation."""
    kind = request.param
    if kind == "docker":
        backend: SandboxBackend = request.getfixturevalue("docker_backend")
        sandbox = await backend.create(SandboxSpec(owner="contract"))
        yield Subject(kind, sandbox)
        await backend.destroy(sandbox.info.session_id)
        return
    fakes, script, cells = _scripted_fakes()
    if kind == "fake":
        yield Subject(kind, await fakes.create(SandboxSpec(owner="contract")), script, cells)
        return
    manager = SandboxManager(_config(), backend=fakes)
    info = await manager.create(SandboxSpec(owner="contract"))
    yield Subject(kind, _SessionView(manager, info.session_id), script, cells)
    await manager.shutdown()


@pytest.fixture(params=["fake", DOCKER])
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    """Each SandboxBackend implementation."""
    if request.param == "docker":
        docker: SandboxBackend = request.getfixturevalue("docker_backend")
        return docker
    return _scripted_fakes()[0]
