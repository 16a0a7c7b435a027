"""Streamed shell output from the guest daemon (run on the host), and the node's stream buffer's caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox.base import Display
from sandbox.streams import StreamLimit, StreamNotFound, StreamRun, StreamRuns
from tests.unit.test_guest_daemon import Guest, start_guest, stop_guest


@pytest.fixture(scope="module")
async def guest() -> AsyncIterator[Guest]:
    started = await start_guest(with_kernel=False)
    yield started
    assert stop_guest(started) == 0


async def test_a_streamed_command_shows_its_output_before_it_ends(guest: Guest) -> None:
    go = Path(guest.workspace, "go")
    chunks: list[str] = []

    def seen(text: str) -> None:
        chunks.append(text)
        if "1\n" in "".join(chunks):
            go.touch()  # the command waits for this: it ends only if "1" came while it ran

    command = "echo 1; until [ -e go ]; do sleep 0.02; done; echo 2; exit 5"
    result = await guest.client.shell_stream(command, 20, seen)
    assert result.exit_code == 5 and not result.timed_out and result.output == "1\n2\n"
    assert "".join(chunks) == "1\n2\n"  # no sentinel, no \r
    again = await guest.client.shell("echo $((1+1))", 10)  # the shell is in its usual state afterwards
    assert again.output == "2\n"


async def test_the_stream_keeps_to_the_output_cap(guest: Guest) -> None:
    chunks: list[str] = []
    result = await guest.client.shell_stream("head -c 300000 /dev/zero | tr '\\0' x", 20, chunks.append, 4096)
    streamed = "".join(chunks)
    assert result.truncated and len(streamed.encode()) < 4096 + 200 and "stream stops here" in streamed


async def test_interrupt_stops_a_streamed_command(guest: Guest) -> None:
    interrupts: list[asyncio.Task[None]] = []

    def seen(text: str) -> None:
        if "started" in text and not interrupts:
            interrupts.append(asyncio.get_running_loop().create_task(guest.client.shell_interrupt()))

    result = await guest.client.shell_stream("echo started; sleep 300", 60, seen)
    assert result.timed_out and result.exit_code is None  # cut as its timeout (300 s away) would cut it
    assert result.output.startswith("started\n")
    await interrupts[0]
    assert (await guest.client.shell("echo still here", 10)).output == "still here\n"
    await guest.client.shell_interrupt()  # nothing runs: a no-op, and the next command is not cut
    assert (await guest.client.shell("sleep 0.2; echo whole", 10)).output == "whole\n"


def test_a_run_keeps_to_its_caps() -> None:
    run = StreamRun("s", "python", limit=10)
    run.add("stdout", "12345")
    run.add("stderr", "6789abcdef")
    run.add("stdout", "more")
    run.add("display", Display("text/html", "<b>x</b>"))
    events = [(e.event, e.data) for e in run.events]
    assert events[:2] == [("stdout", "12345"), ("stderr", "6789a")] and events[2][0] == "truncated"
    assert events[3] == ("display", {"mime": "text/html", "data": "<b>x</b>"})
    assert sum(e.event == "truncated" for e in run.events) == 1


async def test_runs_belong_to_their_session_and_are_capped() -> None:
    runs = StreamRuns(per_session=2)
    first = runs.new("a", "shell", 100)
    runs.new("a", "shell", 100)
    with pytest.raises(StreamLimit):
        runs.new("a", "shell", 100)
    runs.new("b", "shell", 100)  # another session's count is its own
    with pytest.raises(StreamNotFound):
        runs.get("b", first.id)
    first.add("stdout", "hi")
    first.finish({"exit_code": 0})
    read = await first.read(0, 1)
    assert read.done and read.result == {"exit_code": 0} and [e.data for e in read.events] == ["hi"]
    runs.new("a", "shell", 100)  # room again once one ended
