"""The guest daemon (sandbox/_guest/sbxd.py) run on the host as a subprocess, driven through GuestClient."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox._guest_client import GuestClient
from sandbox._kernel import HOST_CONNECTION_FILE, KernelConnection, write_connection_files
from sandbox._output import truncation_marker
from sandbox.errors import (
    FileTooLarge,
    InvalidPath,
    SandboxError,
    SandboxGone,
    SandboxUnavailable,
    WorkspaceFileNotFound,
)

SBXD = Path(__file__).resolve().parents[2] / "sandbox" / "_guest" / "sbxd.py"


@dataclass
class Guest:
    base: str
    dir: str
    workspace: str
    proc: subprocess.Popen[bytes]
    client: GuestClient

    @property
    def socket(self) -> str:
        return os.path.join(self.dir, "sbxd.sock")


async def start_guest(with_kernel: bool) -> Guest:
    base = tempfile.mkdtemp(prefix="sbxd-")  # short: unix socket paths are capped at 107 bytes
    directory, workspace = os.path.join(base, "d"), os.path.join(base, "w")
    os.mkdir(directory, 0o700)
    os.mkdir(workspace)
    if with_kernel:
        write_connection_files(directory, container_dir=directory)
    with open(os.path.join(base, "sbxd.log"), "wb") as log:
        argv = [sys.executable, str(SBXD), "--dir", directory, "--workspace", workspace]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    guest = Guest(base, directory, workspace, proc, GuestClient(os.path.join(directory, "sbxd.sock")))
    await guest.client.wait_ready(10)
    return guest


def stop_guest(guest: Guest) -> int:
    if guest.proc.poll() is None:
        guest.proc.send_signal(signal.SIGTERM)
    code = guest.proc.wait(10)
    shutil.rmtree(guest.base, ignore_errors=True)
    return code


@pytest.fixture(scope="module")
async def guest() -> AsyncIterator[Guest]:
    started = await start_guest(with_kernel=True)
    yield started
    assert stop_guest(started) == 0


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    data = json.dumps(header).encode()
    return struct.pack(">I", len(data)) + data + payload


def raw_request(path: str, data: bytes, *, close_write: bool = False) -> dict[str, Any]:
    """Send raw bytes to the daemon, bypassing the client's own checks; the reply header."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(data)
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        reader = sock.makefile("rb")
        (size,) = struct.unpack(">I", reader.read(4))
        reply: dict[str, Any] = json.loads(reader.read(size))
        return reply


def running(*argv: str) -> bool:
    """Whether a process with exactly this command line exists."""
    wanted = ("\0".join(argv) + "\0").encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read() == wanted:
                    return True
        except OSError:
            continue
    return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


# ---------------------------------------------------------------- shell


async def test_state_carries_over_between_calls(guest: Guest) -> None:
    sh = guest.client.shell
    await sh("mkdir -p carry && cd carry && export CARRY=yes", 5)
    await sh("greet() { echo hello \"$1\"; }; alias hi='echo aliased'", 5)
    result = await sh("pwd; echo $CARRY; greet you; hi", 5)
    assert result.output == f"{guest.workspace}/carry\nyes\nhello you\naliased\n"
    assert result.cwd == f"{guest.workspace}/carry"
    assert result.exit_code == 0
    await sh("cd ..", 5)


async def test_background_job_survives_the_call(guest: Guest) -> None:
    pid = (await guest.client.shell("sleep 100 & echo $!", 5)).output.strip()
    result = await guest.client.shell(f"kill -0 {pid} && echo alive; jobs", 5)
    assert result.output.startswith("alive\n")
    assert "sleep 100" in result.output
    await guest.client.shell("kill %1; wait", 5)


@pytest.mark.parametrize(
    ("command", "code"), [("true", 0), ("false", 1), ("(exit 7)", 7), ("bash -c 'exit 42'", 42)]
)
async def test_exit_codes(guest: Guest, command: str, code: int) -> None:
    result = await guest.client.shell(command, 5)
    assert (result.exit_code, result.timed_out, result.shell_restarted) == (code, False, False)


async def test_commands_get_default_signal_dispositions(guest: Guest) -> None:
    result = await guest.client.shell("yes | head -n 1; echo ${PIPESTATUS[0]}", 5)
    assert result.output == "y\n141\n"  # 128 + SIGPIPE, not "yes: write error"


async def test_stderr_is_part_of_the_output(guest: Guest) -> None:
    result = await guest.client.shell("echo out; echo err >&2; ls /nonexistent-dir", 5)
    assert result.output.startswith("out\nerr\n")
    assert "nonexistent-dir" in result.output
    assert result.exit_code == 2


async def test_multi_line_commands_and_heredocs(guest: Guest) -> None:
    command = (
        "for i in 1 2; do\n  echo n$i\ndone\ncat <<'EOF'\nliteral $HOME\nEOF\ncat <<EOF\nx=$((2 + 3))\nEOF"
    )
    result = await guest.client.shell(command, 5)
    assert result.output == "n1\nn2\nliteral $HOME\nx=5\n"


async def test_output_is_capped_with_head_tail_and_marker(guest: Guest) -> None:
    full = "".join(f"{i}\n" for i in range(1, 100_001))
    result = await guest.client.shell("seq 1 100000", 5, limit=1000)
    assert result.truncated
    marker = truncation_marker(len(full) - 1000)
    assert result.output == full[:750] + marker + full[-250:]
    small = await guest.client.shell("seq 1 3", 5, limit=1000)
    assert (small.output, small.truncated) == ("1\n2\n3\n", False)


async def test_timeout_kills_the_command_and_keeps_the_shell(guest: Guest) -> None:
    await guest.client.shell("mkdir -p slow && cd slow && export KEPT=1", 5)
    started = time.monotonic()
    result = await guest.client.shell("sleep 1234", 0.5)
    assert time.monotonic() - started < 2.0
    assert result.timed_out and result.exit_code is None and not result.shell_restarted
    assert not running("sleep", "1234")
    after = await guest.client.shell("pwd; echo $KEPT", 5)
    assert after.output == f"{guest.workspace}/slow\n1\n"
    await guest.client.shell("cd ..", 5)


async def test_timeout_of_a_builtin_loop_recovers(guest: Guest) -> None:
    await guest.client.shell("export LOOPED=1", 5)
    result = await guest.client.shell("while true; do :; done", 0.5)
    assert result.timed_out and not result.shell_restarted
    assert (await guest.client.shell("echo $LOOPED", 5)).output == "1\n"


async def test_timeout_when_sigint_is_ignored(guest: Guest) -> None:
    started = time.monotonic()
    result = await guest.client.shell("trap '' INT; sleep 1235", 0.5)
    assert time.monotonic() - started < 3.0
    assert result.timed_out
    assert not running("sleep", "1235")
    assert (await guest.client.shell("trap - INT; echo back", 5)).output == "back\n"


async def test_exit_restarts_the_shell(guest: Guest) -> None:
    await guest.client.shell("export GONE=1; cd /", 5)
    result = await guest.client.shell("echo bye; exit 3", 5)
    assert (result.exit_code, result.shell_restarted, result.cwd) == (3, True, guest.workspace)
    assert "bye" in result.output
    after = await guest.client.shell('echo "[$GONE]"; pwd', 5)
    assert after.output == f"[]\n{guest.workspace}\n"
    assert not after.shell_restarted


async def test_reading_stdin_does_not_hang(guest: Guest) -> None:
    started = time.monotonic()
    result = await guest.client.shell("cat; read line; echo done", 5)
    assert result.output == "done\n"
    assert time.monotonic() - started < 1.0


async def test_spoofed_sentinel_is_plain_output(guest: Guest) -> None:
    spoof = r"printf '\036%s\036%s\036%s\036\n' 0123456789abcdef 0 /fake"
    result = await guest.client.shell(f"{spoof}; echo after; false", 5)
    assert result.output == "\x1e0123456789abcdef\x1e0\x1e/fake\x1e\nafter\n"
    assert (result.exit_code, result.cwd) == (1, guest.workspace)


async def test_xtrace_does_not_show_the_plumbing(guest: Guest) -> None:
    result = await guest.client.shell("set -x; echo traced", 5)
    after = await guest.client.shell("set +x", 5)
    assert "traced" in result.output
    assert "printf" not in result.output + after.output
    assert ".sh" not in result.output + after.output


# ---------------------------------------------------------------- files


async def test_write_read_list_round_trip(guest: Guest) -> None:
    client = guest.client
    blob = bytes(range(256)) * 1000
    entry = await client.write("nested/deeper/blob.bin", blob, 1 << 20)
    assert (entry.path, entry.size, entry.is_dir) == ("nested/deeper/blob.bin", len(blob), False)
    await client.write("nested/notes.txt", "héllo\n".encode(), 1000)
    await client.write("nested/notes.txt", b"overwritten", 1000)
    assert await client.read("nested/deeper/blob.bin", 1 << 20) == blob
    assert await client.read("./nested//notes.txt", 1000) == b"overwritten"
    assert await client.read("nested/notes.txt", 11) == b"overwritten"
    listing = await client.list("nested")
    assert [(e.path, e.is_dir) for e in listing] == [("nested/deeper", True), ("nested/notes.txt", False)]
    assert listing[1].size == len(b"overwritten")
    assert "nested" in [e.path for e in await client.list("")]
    assert (await client.shell("cat nested/notes.txt", 5)).output == "overwritten"
    empty = await client.write("empty.txt", b"", 10)
    assert empty.size == 0 and await client.read("empty.txt", 10) == b""


async def test_file_errors(guest: Guest) -> None:
    client = guest.client
    await client.write("errs/file.txt", b"0123456789", 100)
    with pytest.raises(WorkspaceFileNotFound):
        await client.read("errs/missing.txt", 100)
    with pytest.raises(WorkspaceFileNotFound):
        await client.list("errs/missing")
    with pytest.raises(InvalidPath):
        await client.read("errs", 100)
    with pytest.raises(InvalidPath):
        await client.write("errs", b"x", 100)
    with pytest.raises(InvalidPath):
        await client.list("errs/file.txt")
    with pytest.raises(InvalidPath):
        await client.write("errs/file.txt/below", b"x", 100)
    with pytest.raises(FileTooLarge):
        await client.read("errs/file.txt", 9)


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a/../../x", "a/..", "..", "bad\x00name"])
async def test_traversal_is_refused_by_the_daemon(guest: Guest, path: str) -> None:
    for header in (
        {"op": "read", "path": path, "max_bytes": 100},
        {"op": "list", "path": path},
        {"op": "write", "path": path, "max_bytes": 100, "payload": 1},
    ):
        reply = raw_request(guest.socket, frame(header, b"x" if "payload" in header else b""))
        assert reply["ok"] is False
        assert reply["error"]["type"] == "invalid_path", reply
    with pytest.raises(InvalidPath):
        await guest.client.read(path, 100)
    assert not os.path.exists(os.path.join(guest.base, "x"))


async def test_symlink_escapes_are_refused(guest: Guest) -> None:
    client = guest.client
    setup = "ln -s .. up && mkdir -p links && cd links && ln -s /etc etc && ln -s /etc/passwd pw"
    await client.shell(
        f"{setup} && ln -s /tmp tmpdir && echo inside > real.txt && ln -s real.txt ok; cd ..", 5
    )
    for read_path in ("links/etc/passwd", "links/pw", "up/sbxd.log", "up", "links/../up/sbxd.log"):
        with pytest.raises(InvalidPath):
            await client.read(read_path, 1 << 20)
    for write_path in ("up/escaped", "links/tmpdir/escaped", "links/etc/escaped", "links/pw"):
        with pytest.raises(InvalidPath):
            await client.write(write_path, b"x", 100)
    for list_path in ("links/etc", "up", "links/tmpdir"):
        with pytest.raises(InvalidPath):
            await client.list(list_path)
    assert not os.path.exists(os.path.join(guest.base, "escaped"))
    assert not os.path.exists("/tmp/escaped")
    assert await client.read("links/ok", 100) == b"inside\n"
    entries = {e.path: e for e in await client.list("links")}
    assert not entries["links/etc"].is_dir and not entries["links/tmpdir"].is_dir
    assert not {e.path: e for e in await client.list("")}["up"].is_dir


async def test_oversized_or_cut_writes_leave_no_file(guest: Guest) -> None:
    with pytest.raises(FileTooLarge):
        await guest.client.write("big.bin", b"x" * 2000, 1000)
    reply = raw_request(
        guest.socket, frame({"op": "write", "path": "big.bin", "max_bytes": 1000, "payload": 2000})
    )
    assert reply["error"]["type"] == "too_large"
    header = {"op": "write", "path": "cut/cut.bin", "max_bytes": 1000, "payload": 1000}
    reply = raw_request(guest.socket, frame(header, b"y" * 500), close_write=True)
    assert reply["error"]["type"] == "bad_request"
    assert not os.path.exists(os.path.join(guest.workspace, "big.bin"))
    assert os.listdir(os.path.join(guest.workspace, "cut")) == []


async def test_disk_full_during_write_leaves_no_file(guest: Guest) -> None:
    # A file-size limit on the daemon fails its writes with EFBIG, as a full disk does with ENOSPC.
    import resource

    before = resource.prlimit(guest.proc.pid, resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
    try:
        with pytest.raises(FileTooLarge, match="File too large"):
            await guest.client.write("full/big.bin", b"z" * 1_000_000, 2_000_000)
    finally:
        resource.prlimit(guest.proc.pid, resource.RLIMIT_FSIZE, before)
    assert os.listdir(os.path.join(guest.workspace, "full")) == []
    assert (await guest.client.write("full/big.bin", b"z" * 1_000_000, 2_000_000)).size == 1_000_000


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">I", 0xFFFFFFFF),
        struct.pack(">I", 5) + b"nope!",
        struct.pack(">I", 2) + b"\xff\xfe",
        frame({"no": "op"}),
        frame([1, 2]),  # type: ignore[arg-type]
        frame({"op": "format_disk"}),
        frame({"op": "shell", "command": 5}),
        frame({"op": "shell", "command": "true", "timeout": "soon"}),
        frame({"op": "read", "path": "x", "max_bytes": -1}),
        struct.pack(">I", 100) + b'{"op":',
    ],
)
async def test_malformed_requests_get_errors_and_the_daemon_lives(guest: Guest, data: bytes) -> None:
    reply = raw_request(guest.socket, data, close_write=True)
    assert reply["ok"] is False and reply["error"]["type"] == "bad_request", reply
    assert (await guest.client.ping())["ok"] is True


async def test_reads_run_while_a_command_runs(guest: Guest) -> None:
    await guest.client.write("concurrent.txt", b"data", 100)
    command = asyncio.create_task(guest.client.shell("sleep 5", 10))
    await asyncio.sleep(0.05)
    reads = await asyncio.gather(*(guest.client.read("concurrent.txt", 100) for _ in range(20)))
    assert not command.done()  # reads queued behind the command would end only after it
    assert reads == [b"data"] * 20
    assert (await command).exit_code == 0


async def test_client_refuses_what_is_not_a_socket(guest: Guest) -> None:
    link = os.path.join(guest.base, "link.sock")
    os.symlink(guest.socket, link)
    with pytest.raises(SandboxUnavailable):
        await GuestClient(link).ping()
    plain = os.path.join(guest.base, "plain.sock")
    Path(plain).write_bytes(b"")
    with pytest.raises(SandboxUnavailable):
        await GuestClient(plain).ping()
    with pytest.raises(SandboxGone):
        await GuestClient(os.path.join(guest.base, "missing.sock")).ping()
    with pytest.raises(SandboxUnavailable):
        await GuestClient(os.path.join(guest.base, "missing.sock")).wait_ready(0.05)


async def test_ping(guest: Guest) -> None:
    reply = await guest.client.ping()
    assert reply["pid"] == guest.proc.pid and reply["uid"] == os.getuid()
    assert reply["hostname"] == socket.gethostname()


# ---------------------------------------------------------------- kernel


class HostSide:
    """The host's end of the guest's kernel: it listens, the kernel connects; the daemon interrupts."""

    def __init__(self, guest: Guest, conn: KernelConnection) -> None:
        self.guest = guest
        self.conn = conn

    async def run(self, code: str, timeout_s: float = 30.0) -> Any:
        return await self.conn.execute(
            code, timeout_s, interrupt=self._interrupt, is_alive=self._is_alive, output_limit=64 * 1024
        )

    async def _interrupt(self) -> None:
        await self.guest.client.kernel("interrupt")

    async def _is_alive(self) -> bool:
        return bool((await self.guest.client.kernel("status"))["alive"])


async def wait_until_dead(guest: Guest) -> dict[str, Any]:
    deadline = time.monotonic() + 3
    while (status := await guest.client.kernel("status"))["alive"] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return status


async def test_kernel_supervision(guest: Guest) -> None:
    status = await guest.client.kernel("status")
    assert status["alive"] and isinstance(status["pid"], int) and status["restarts"] == 0
    assert (await guest.client.ping())["kernel_alive"] is True
    assert (await guest.client.kernel("start"))["pid"] == status["pid"]  # already running: a no-op

    conn = await KernelConnection.connect(os.path.join(guest.dir, HOST_CONNECTION_FILE), 30)
    host = HostSide(guest, conn)
    try:
        assert (await host.run("x = 41")).status == "ok"
        slept = await host.run("import time; time.sleep(30)", timeout_s=0.5)  # interrupted through the daemon
        assert slept.status == "timeout" and slept.error is not None
        assert slept.error.ename == "KeyboardInterrupt"
        assert (await host.run("assert x == 41")).status == "ok"  # state kept

        died = await host.run("import os; os._exit(1)")
        assert died.error is not None and died.error.ename == "KernelDied"
        dead = await wait_until_dead(guest)
        assert (dead["alive"], dead["pid"]) == (False, None)
    finally:
        await conn.close()

    restarted = await guest.client.kernel("kernel_restart")
    assert restarted["alive"] and restarted["restarts"] == 1 and restarted["pid"] != status["pid"]
    again = await guest.client.kernel("restart")
    assert again["restarts"] == 2 and again["pid"] != restarted["pid"]
    assert not alive(restarted["pid"])
    os.kill(again["pid"], signal.SIGKILL)
    assert (await wait_until_dead(guest))["alive"] is False
    assert (await guest.client.kernel("start"))["alive"] is True
    with pytest.raises(ValueError):
        await guest.client.kernel("reboot")


async def test_kernel_start_without_connection_file() -> None:
    guest = await start_guest(with_kernel=False)
    try:
        assert (await guest.client.kernel("status"))["alive"] is False
        assert (await guest.client.ping())["kernel_alive"] is False
        with pytest.raises(SandboxError, match="connection file"):
            await guest.client.kernel("start")
    finally:
        assert stop_guest(guest) == 0


async def test_sigterm_stops_the_shell_and_its_jobs() -> None:
    guest = await start_guest(with_kernel=False)
    try:
        bash_pid = int((await guest.client.shell("echo $$", 5)).output)
        await guest.client.shell("sleep 1236 &", 5)
    finally:
        assert stop_guest(guest) == 0
    assert not alive(bash_pid)
    assert not running("sleep", "1236")
    assert not os.path.exists(guest.socket)


# ---------------------------------------------------------------- latency


async def test_shell_round_trip_latency(guest: Guest) -> None:
    samples = []
    for _ in range(200):
        started = time.perf_counter()
        await guest.client.shell("true", 5)
        samples.append(time.perf_counter() - started)
    samples.sort()
    print(
        f"\nshell `true` round trip over 200 calls: p50 {statistics.median(samples) * 1000:.2f} ms, "
        f"p95 {samples[189] * 1000:.2f} ms"
    )


async def test_a_symlink_in_place_of_the_socket_is_never_followed(guest: Guest) -> None:
    """A link to another session's live socket: the client refuses it and the other daemon sees nothing."""
    base = tempfile.mkdtemp(prefix="sbxd-link-")
    try:
        planted = os.path.join(base, "sbxd.sock")
        os.symlink(guest.socket, planted)  # `guest` plays the other session: a real daemon that answers
        before = await guest.client.ping()
        with pytest.raises(SandboxUnavailable, match="not a socket"):
            await GuestClient(planted).ping()
        # A link to a directory holding the socket, and a dangling link, are refused the same way.
        os.unlink(planted)
        os.symlink(base, planted)
        with pytest.raises(SandboxUnavailable, match="not a socket"):
            await GuestClient(planted).ping()
        os.unlink(planted)
        os.symlink(os.path.join(base, "nothing"), planted)
        with pytest.raises(SandboxUnavailable, match="not a socket"):
            await GuestClient(planted).ping()
        assert (await guest.client.ping())["pid"] == before["pid"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_the_client_connects_to_the_inode_it_checked() -> None:
    """Through /proc/self/fd: a socket path longer than sun_path allows works too, as a side effect."""
    base = tempfile.mkdtemp(prefix="sbxd-long-")
    deep = os.path.join(base, *(["d" * 40] * 3))
    os.makedirs(deep)
    path = os.path.join(deep, "sbxd.sock")
    assert len(path) > 108
    served: list[bytes] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            (size,) = struct.unpack(">I", conn.recv(4))
            served.append(conn.recv(size))
            conn.sendall(frame({"ok": True, "pid": 7}))

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(deep)  # bind by a short relative name
    try:
        listener.bind("sbxd.sock")
    finally:
        os.chdir(cwd)
    listener.listen(1)
    try:
        task = asyncio.get_running_loop().run_in_executor(None, lambda: serve(listener.accept()[0]))
        assert (await GuestClient(path).ping())["pid"] == 7
        await task
        assert json.loads(served[0]) == {"op": "ping"}
    finally:
        listener.close()
        shutil.rmtree(base, ignore_errors=True)
