"""The live contract: streamed shell and cells, and background processes, the same on the fake and on Docker.

The fake runs nothing: it is told what each command prints (its shell, cell and program handlers are
`Scripted`), and the Docker sandbox runs the same commands for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from sandbox.base import PythonResult, SandboxBackend, SandboxSpec, ShellResult
from sandbox.fake import FakeBackend, FakeProgram, FakeSandbox, Scripted
from sandbox.processes import ProcessInfo, ProcessNotFound
from tests.contract.conftest import DOCKER

SHELL = "printf 'one\\ntwo\\n'"
CELL = "print('x'); print('y')"
PRINTS = "printf 'first\\nsecond\\n'"
SERVER = "sleep 300"
CAT = "cat"


@dataclass
class Live:
    """A sandbox with streams and background processes, and the fake's scripts (None on Docker)."""

    kind: str
    sandbox: Any


def _fake(info: Any) -> FakeSandbox:
    shell: Scripted[ShellResult] = Scripted(
        "shell command", {SHELL: ShellResult(0, "one\ntwo\n", False, False, "/workspace")}
    )
    cells: Scripted[PythonResult] = Scripted(
        "Python cell", {CELL: PythonResult(status="ok", stdout="x\ny\n")}
    )
    programs: Scripted[FakeProgram] = Scripted(
        "background command",
        {
            PRINTS: FakeProgram("first\nsecond\n", 0),
            SERVER: FakeProgram("", None),
            CAT: FakeProgram("", None, echoes_stdin=True),
        },
    )
    return FakeSandbox(info, shell=shell, python=cells, programs=programs)


@pytest.fixture(params=["fake", DOCKER])
async def live(request: pytest.FixtureRequest) -> AsyncIterator[Live]:
    if request.param == "docker":
        backend: SandboxBackend = request.getfixturevalue("docker_backend")
    else:
        backend = FakeBackend("contract", sandbox_factory=_fake)
    sandbox = await backend.create(SandboxSpec(owner="contract"))
    try:
        yield Live(request.param, sandbox)
    finally:
        await backend.destroy(sandbox.info.session_id)


def _sink(events: list[tuple[str, Any]]) -> Any:
    return lambda event, data: events.append((event, data))


async def test_a_streamed_command_gives_its_output_as_events_then_the_answer(live: Live) -> None:
    events: list[tuple[str, Any]] = []
    result = await live.sandbox.shell_streaming(SHELL, 30.0, _sink(events))
    assert result.exit_code == 0 and result.output == "one\ntwo\n"
    assert {e for e, _ in events} == {"stdout"}
    assert "".join(d for _, d in events) == "one\ntwo\n"


async def test_a_streamed_cell_gives_its_prints_as_events_then_the_answer(live: Live) -> None:
    events: list[tuple[str, Any]] = []
    result = await live.sandbox.python_streaming(CELL, 30.0, _sink(events))
    assert result.status == "ok" and result.stdout == "x\ny\n"
    assert "".join(d for e, d in events if e == "stdout") == "x\ny\n"


async def _until_exited(live: Live, pid: int) -> ProcessInfo:
    for _ in range(300):
        info: ProcessInfo = await live.sandbox.processes.get(pid)
        if info.status == "exited":
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} never exited")


async def _all_output(live: Live, pid: int, offset: int = 0) -> str:
    text = ""
    while True:
        out = await live.sandbox.processes.output(pid, offset, 5.0)
        text += "".join(c.data for c in out.chunks)
        offset = out.next_offset
        if out.done and not out.chunks:
            return text


async def test_a_finished_process_has_its_whole_output_replayable_from_an_offset(live: Live) -> None:
    processes = live.sandbox.processes
    started = await processes.start(PRINTS)
    assert started.command == PRINTS and started.cwd == "/workspace"
    ended = await _until_exited(live, started.pid)
    assert (ended.exit_code, ended.signal) == (0, None)
    assert await _all_output(live, started.pid) == "first\nsecond\n"
    assert await _all_output(live, started.pid, len("first\n")) == "second\n"
    assert started.pid in {p.pid for p in await processes.list()}


async def test_a_signal_ends_a_running_process(live: Live) -> None:
    processes = live.sandbox.processes
    started = await processes.start(SERVER)
    assert (await processes.get(started.pid)).status == "running"
    await processes.signal(started.pid, "TERM")
    ended = await _until_exited(live, started.pid)
    assert (ended.exit_code, ended.signal) == (143, "TERM")


async def test_stdin_reaches_a_process_that_takes_it(live: Live) -> None:
    processes = live.sandbox.processes
    started = await processes.start(CAT, stdin=True)
    assert await processes.write_stdin(started.pid, b"hello\n", eof=True) == len(b"hello\n")
    assert (await _until_exited(live, started.pid)).exit_code == 0
    assert await _all_output(live, started.pid) == "hello\n"


async def test_an_unknown_pid_is_not_found(live: Live) -> None:
    with pytest.raises(ProcessNotFound):
        await live.sandbox.processes.get(999_999)
    with pytest.raises(ProcessNotFound):
        await live.sandbox.processes.signal(999_999, "TERM")
