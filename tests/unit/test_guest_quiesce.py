"""Letting go of host sockets for a memory checkpoint: the guest daemon's quiesce and SIGUSR2, the kernel's pipe.

gVisor saves no socket bound or connected on the host, and no loopback TCP listener a thread waits on. These run
the daemon and the kernel on the host (the checkpoint itself is tested under runsc in test_pause.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator

import pytest

from sandbox import _hostdirs, _runsc_state
from sandbox._kernel import HOST_CONNECTION_FILE, KernelConnection
from sandbox.errors import SessionBusy
from tests.unit.test_guest_daemon import Guest, HostSide, start_guest, stop_guest


@pytest.fixture
async def guest() -> AsyncIterator[Guest]:
    started = await start_guest(with_kernel=True)
    yield started
    assert stop_guest(started) == 0


def _refused(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return True
    return False


async def test_a_quiesced_daemon_stops_listening_until_sigusr2(guest: Guest) -> None:
    reply, _ = await guest.client.call({"op": "quiesce"})
    assert reply == {"ok": True, "listening": False}
    assert _refused(guest.socket)  # nothing accepts: the listening socket is closed, not just ignored
    assert guest.proc.poll() is None
    os.unlink(guest.socket)
    guest.proc.send_signal(signal.SIGUSR2)
    assert (await guest.client.wait_ready(10))["ok"] is True
    shell = await guest.client.shell("echo back", 10, 4096)
    assert (shell.exit_code, shell.output) == (0, "back\n")


async def test_quiesce_twice_and_relisten_twice(guest: Guest) -> None:
    for _ in range(2):
        assert (await guest.client.call({"op": "quiesce"}))[0]["ok"] is True
        assert _refused(guest.socket)
        guest.proc.send_signal(signal.SIGUSR2)
        guest.proc.send_signal(signal.SIGUSR2)  # a second signal while listening changes nothing
        assert (await guest.client.wait_ready(10))["ok"] is True
    assert (await guest.client.ping())["pid"] == guest.proc.pid


async def test_a_forked_childs_output_reaches_the_cell_without_loopback_tcp(guest: Guest) -> None:
    conn = await KernelConnection.connect(os.path.join(guest.dir, HOST_CONNECTION_FILE), 30)
    try:
        cell = await HostSide(guest, conn).run(
            "import os, sys, time\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    print('from the child'); sys.stdout.flush(); time.sleep(0.5); os._exit(0)\n"
            "os.waitpid(pid, 0)\n"
            "time.sleep(0.5)\n"
            "import gc, zmq\n"
            "print(sorted({s.getsockopt(zmq.LAST_ENDPOINT).decode().split(':')[0]\n"
            "              for s in gc.get_objects() if isinstance(s, zmq.Socket) and not s.closed}))\n"
        )
    finally:
        await conn.close()
    assert cell.status == "ok", cell
    assert "from the child" in cell.stdout
    assert "tcp" not in cell.stdout.splitlines()[-1], cell.stdout


def test_a_link_in_place_of_the_daemons_socket_is_not_a_socket(tmp_path) -> None:
    private = _hostdirs.make_dirs(str(tmp_path), "ses_x", 0)
    assert not _hostdirs.guest_socket_bound(private)
    target = tmp_path / "host.sock"
    with socket.socket(socket.AF_UNIX) as host:
        host.bind(str(target))
        os.symlink(target, _hostdirs.guest_socket(private))
        assert not _hostdirs.guest_socket_bound(private)  # lstat: the link itself, never what it names
        _hostdirs.reopen_guest_dir(private)
        assert target.exists() and not os.path.lexists(_hostdirs.guest_socket(private))
        with socket.socket(socket.AF_UNIX) as daemon:
            daemon.bind(_hostdirs.guest_socket(private))
            assert _hostdirs.guest_socket_bound(private)
    _hostdirs.freeze_guest_dir(private)
    assert os.stat(os.path.dirname(_hostdirs.guest_socket(private))).st_mode & 0o777 == 0o755


async def test_quiesce_is_refused_while_another_connection_is_open(guest: Guest) -> None:
    running = asyncio.create_task(guest.client.shell("sleep 2", 10, 4096))
    await asyncio.sleep(0.3)
    with pytest.raises(SessionBusy, match="1 other connection"):
        await guest.client.call({"op": "quiesce"})
    assert not running.done()  # refused, nothing cut
    assert (await running).exit_code == 0
    assert (await guest.client.call({"op": "quiesce"}))[0]["ok"] is True  # alone now
    guest.proc.send_signal(signal.SIGUSR2)
    assert (await guest.client.wait_ready(10))["ok"] is True


def test_cleaning_the_guest_directory_keeps_only_the_daemons_socket(tmp_path) -> None:
    private = _hostdirs.make_dirs(str(tmp_path), "ses_y", 0)
    guest_dir = os.path.dirname(_hostdirs.guest_socket(private))
    with socket.socket(socket.AF_UNIX) as daemon:
        daemon.bind(_hostdirs.guest_socket(private))
        os.makedirs(os.path.join(guest_dir, "d", "deeper"))
        open(os.path.join(guest_dir, "d", "deeper", "f"), "w").close()
        open(os.path.join(guest_dir, "x"), "w").close()
        os.symlink("/etc/passwd", os.path.join(guest_dir, "link"))
        _hostdirs.freeze_guest_dir(private)
        assert _hostdirs.clean_guest_dir(private)
        assert os.listdir(guest_dir) == ["sbxd.sock"] and os.path.exists("/etc/passwd")


def test_runsc_state_is_cleared_only_where_it_can_be(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert _runsc_state.is_stale_state_error(Exception('500 Server Error: ("id already in use")'))
    assert not _runsc_state.is_stale_state_error(Exception("no such container"))
    monkeypatch.setattr(_runsc_state, "STATE_ROOTS", (str(tmp_path),))
    assert not _runsc_state.clear_stale_state("/usr/bin/runsc", "abc")  # nothing held: nothing to clear
    (tmp_path / "abc_sandbox:abc.state").write_text("{}")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert not _runsc_state.clear_stale_state("/usr/bin/runsc", "abc")  # not root: it cannot
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not _runsc_state.clear_stale_state("", "abc")  # no runtime binary named
    assert not _runsc_state.clear_stale_state("/bin/true", "abc")  # the command ran; the state is still there
    assert (tmp_path / "abc_sandbox:abc.state").exists()
