"""Background processes of the guest daemon, run on the host as a subprocess and driven through GuestProcesses."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox._guest_processes import GuestProcesses
from sandbox.errors import FileTooLarge
from sandbox.processes import ProcessLimit, ProcessLimits, ProcessNotFound, ProcessOutput, StdinTooLarge
from tests.unit.test_guest_daemon import Guest, alive, frame, raw_request, start_guest, stop_guest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sandbox" / "_guest"))
from sbxd_background import MAX_STDIN, RingBuffer, complete_utf8

LIMITS = ProcessLimits(max_running=3, output_bytes=64 * 1024)


@pytest.fixture(scope="module")
async def guest() -> AsyncIterator[Guest]:
    started = await start_guest(with_kernel=False)
    yield started
    assert stop_guest(started) == 0


@pytest.fixture(scope="module")
def procs(guest: Guest) -> GuestProcesses:
    return GuestProcesses(guest.client, LIMITS)


async def until_done(procs: GuestProcesses, pid: int, offset: int = 0) -> tuple[list[ProcessOutput], str]:
    """Follow the process's output to its end: every read, and the text in order."""
    reads = []
    while True:
        out = await procs.output(pid, offset, wait_s=10)
        reads.append(out)
        offset = out.next_offset
        if out.done:
            return reads, "".join(c.data for r in reads for c in r.chunks)


async def test_output_comes_while_the_process_runs_and_is_complete_after_it_ends(
    procs: GuestProcesses,
) -> None:
    info = await procs.start("for i in 1 2 3; do echo $i; sleep 0.3; done; echo oops >&2; exit 3")
    assert info.status == "running" and info.exit_code is None
    first = await procs.output(info.pid, 0, wait_s=10)
    assert first.chunks[0].data.startswith("1\n") and not first.done  # before the command ended
    reads, text = await until_done(procs, info.pid)
    assert text == "1\n2\n3\noops\n"
    streams = {c.stream for r in reads for c in r.chunks}
    assert "stderr" in streams
    done = reads[-1].process
    assert done.status == "exited" and done.exit_code == 3 and done.signal is None
    replay = await procs.output(info.pid, 2)  # from an offset: what came after "1\n"
    assert "".join(c.data for c in replay.chunks) == "2\n3\noops\n" and replay.done
    assert (await procs.get(info.pid)).exit_code == 3
    assert info.pid in [p.pid for p in await procs.list()]


async def test_cwd_env_and_stdin(procs: GuestProcesses, guest: Guest) -> None:
    Path(guest.workspace, "sub").mkdir()
    info = await procs.start('pwd; echo "$GREETING"; cat', cwd="sub", env={"GREETING": "hi"}, stdin=True)
    assert await procs.write_stdin(info.pid, "über\n".encode(), eof=True) == len("über\n".encode())
    _, text = await until_done(procs, info.pid)
    assert text == f"{guest.workspace}/sub\nhi\nüber\n"


async def test_a_process_without_stdin_refuses_writes(procs: GuestProcesses) -> None:
    info = await procs.start("true")
    with pytest.raises(Exception, match="no open stdin"):
        await procs.write_stdin(info.pid, b"x")


async def test_oversized_stdin_is_refused_on_both_sides(procs: GuestProcesses, guest: Guest) -> None:
    info = await procs.start("cat", stdin=True)
    with pytest.raises(StdinTooLarge):
        await procs.write_stdin(info.pid, b"x" * (MAX_STDIN + 1))
    payload = b"x" * (MAX_STDIN + 1)  # past the host's check: the daemon refuses it too, and still answers
    reply = raw_request(
        guest.socket, frame({"op": "proc_stdin", "pid": info.pid, "payload": len(payload)}, payload)
    )
    assert reply["ok"] is False and reply["error"]["type"] == "too_large"
    with pytest.raises(FileTooLarge):
        await guest.client.call({"op": "proc_stdin", "pid": info.pid}, payload)
    await procs.signal(info.pid, "KILL")


async def test_signal_stops_a_process_and_its_children(procs: GuestProcesses) -> None:
    info = await procs.start("sleep 300 & echo $!; wait")
    first = await procs.output(info.pid, 0, wait_s=10)
    child = int(first.chunks[0].data.split()[0])
    after = await procs.signal(info.pid, "TERM")
    assert after.pid == info.pid
    reads, _ = await until_done(procs, info.pid)
    end = reads[-1].process
    assert end.status == "exited" and end.signal == "TERM" and end.exit_code == 128 + 15
    assert not alive(child)


async def test_the_cap_on_running_processes_holds(procs: GuestProcesses) -> None:
    for p in await procs.list():
        if p.status == "running":
            await procs.signal(p.pid, "KILL")
            await until_done(procs, p.pid)
    sleepers = [await procs.start("sleep 300") for _ in range(LIMITS.max_running)]
    with pytest.raises(ProcessLimit):
        await procs.start("sleep 300")
    await procs.signal(sleepers[0].pid, "KILL")
    await until_done(procs, sleepers[0].pid)
    sleepers[0] = await procs.start("sleep 300")  # room again once one ended
    for s in sleepers:
        await procs.signal(s.pid, "KILL")


async def test_output_past_the_ring_buffer_keeps_the_newest_bytes(procs: GuestProcesses) -> None:
    info = await procs.start("head -c 1000000 /dev/zero | tr '\\0' a; echo END")
    while not (await procs.output(info.pid, 1 << 40, wait_s=10)).done:  # waits for the end, reads nothing
        pass
    reads, text = await until_done(procs, info.pid)
    assert reads[0].dropped > 0 and reads[0].chunks[0].offset == reads[0].dropped
    assert text.endswith("aEND\n") and len(text.encode()) <= LIMITS.output_bytes
    assert reads[-1].next_offset == 1000000 + len("END\n")


async def test_an_unknown_pid_is_not_found(procs: GuestProcesses) -> None:
    for call in (procs.get(999999), procs.output(999999), procs.signal(999999, "TERM")):
        with pytest.raises(ProcessNotFound):
            await call


def test_utf8_cut_in_the_middle_waits_for_the_rest() -> None:
    data = "aé€😀".encode()
    assert complete_utf8(data) == len(data)
    assert complete_utf8(data[:-1]) == len(data) - 4
    assert complete_utf8(data[:-3]) == len(data) - 4
    assert complete_utf8(data[:2]) == 1
    assert complete_utf8(b"") == 0


def test_ring_buffer_reads_from_any_offset() -> None:
    ring = RingBuffer(1 << 16)
    ring.add("stdout", b"a" * 40000)
    ring.add("stderr", b"b" * 40000)
    assert ring.start == 40000 and ring.end == 80000
    assert ring.read(0, 10) == [(40000, "stderr", b"b" * 10)]
    assert ring.read(79990, 100) == [(79990, "stderr", b"b" * 10)]
    assert ring.read(80000, 100) == []
