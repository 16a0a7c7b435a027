"""Attacks from inside a real sandbox on what the host shares with it: the kernel's sockets and /sbx.

The backend runs in this test process, so its memory is this process's: a flood that the host buffered
would show in VmRSS. Sandbox B, on the same backend, must keep answering while A attacks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import docker
import pytest
import pytest_asyncio

from sandbox import _hostdirs, _labels
from sandbox.base import Limits, Runtime, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend, DockerSandbox
from tests.integration.test_sandbox_security import bounded, py, sh

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LIMITS = Limits(memory_mb=512, pids=128, disk_mb=64, tmp_mb=16)
T = TypeVar("T")

# A ZMTP 3 peer written from scratch (no libzmq in the way), run inside the sandbox: it connects to the
# host's iopub relay as a PUB and sends the frames of one message that never ends.
ENDLESS_MESSAGE = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\0") + b"\0" * 32)
s.recv(64)
name, kind = b"Socket-Type", b"PUB"
ready = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(kind)) + kind
s.sendall(bytes([0x04, len(ready)]) + ready)
frame = bytes([0x01, 200]) + b"x" * 200  # MORE set: the message goes on
chunk = frame * 300
sent = 0
try:
    while True:
        s.sendall(chunk)
        sent += len(chunk)
except OSError as exc:
    print(f"cut off after {sent} bytes: {exc.__class__.__name__}", flush=True)
"""


@dataclasses.dataclass
class Pair:
    backend: DockerBackend
    a: DockerSandbox
    b: DockerSandbox

    async def renew_a(self) -> None:
        await self.backend.destroy(self.a.info.session_id)
        self.a = await self.backend.create(SandboxSpec(limits=LIMITS, owner="tenant-a"))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pair(
    docker_engine: docker.DockerClient, sandbox_image: str, sandbox_runtime: Runtime
) -> AsyncIterator[Pair]:
    config = SandboxConfig(
        image=sandbox_image,
        runtime=sandbox_runtime,
        instance_id=f"bndtest-{secrets.token_hex(4)}",
        node_id="n1",
        ready_timeout_s=30,
        shared_dir_mb=0,  # what a server that is not root gets: no tmpfs under /sbx
    )
    backend = DockerBackend(config)
    made: list[Pair] = []
    try:
        a = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-a"))
        b = await backend.create(SandboxSpec(owner="tenant-b"))
        made.append(Pair(backend, a, b))
        yield made[0]
    finally:
        await (made[0].backend if made else backend).close()  # a re-attach test may have replaced it
        for container in docker_engine.containers.list(
            all=True, filters=_labels.instance_filter(config.instance_id)
        ):
            container.remove(force=True)
        instance_dir = os.path.join(config.runtime_dir, config.instance_id)
        if os.path.isdir(instance_dir):
            os.rmdir(instance_dir)


def rss_kb() -> int:
    """This process's resident memory, from /proc (the backend lives here)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


class RssWatch:
    """Samples VmRSS every 20 ms while an attack runs; the peak above the start is what it cost."""

    def __init__(self) -> None:
        self.start = rss_kb()
        self.peak = self.start
        self._task = asyncio.ensure_future(self._sample())

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_kb())
            await asyncio.sleep(0.02)

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.peak = max(self.peak, rss_kb())
        return (self.peak - self.start) // 1024


async def bystander_answers(sandbox: DockerSandbox, until: asyncio.Future[object]) -> list[float]:
    """Call B again and again while the attack runs; the latency of each call."""
    latencies = []
    while not until.done() or not latencies:
        started = time.monotonic()
        cell = await py(sandbox, "6 * 7", timeout_s=30)
        assert (cell.status, cell.result) == ("ok", "42"), cell
        shell = await sh(sandbox, "echo up", timeout_s=30)
        assert shell.output == "up\n", shell
        latencies.append(time.monotonic() - started)
    return latencies


async def test_huge_frames_on_the_kernels_own_iopub_socket_are_cut_off_and_the_kernel_replaced(
    pair: Pair,
) -> None:
    assert (await py(pair.a, "kept = 'state'")).status == "ok"
    # gVisor counts all of the sandbox's memory, libzmq's copy of the frame too: at 200 MB its memory watch may
    # end the kernel (at memory_mb) before the host sees the frame; 100 MB is still 12 times the host's cap.
    frame_size = 100_000_000 if pair.backend.config.runtime == "runsc" else 200_000_000
    watch = RssWatch()
    flood = asyncio.ensure_future(
        py(
            pair.a,
            "import zmq\n"
            "sock = get_ipython().kernel.iopub_thread.socket\n"
            f"frame = b'x' * {frame_size}\n"
            "for _ in range(1000):\n"
            "    sock.send(frame)\n",
            timeout_s=60,
        )
    )
    latencies = await bystander_answers(pair.b, flood)
    result = await flood
    grew_mb = await watch.stop()
    print(f"\nhuge-frame flood: host RSS +{grew_mb} MB; bystander calls took at most {max(latencies):.2f} s")
    assert result.status == "error" and result.error is not None, result
    assert result.error.ename == "KernelProtocolError", result
    assert "over" in result.error.evalue and "fresh kernel" in result.error.evalue, result.error
    assert grew_mb < 150, f"the host's memory grew by {grew_mb} MB"
    after = await py(pair.a, "'kept' in globals()")
    assert (after.status, after.result) == ("ok", "False"), after  # a fresh kernel
    assert max(latencies) < 30


async def test_a_message_that_never_ends_is_cut_off_and_host_memory_stays_bounded(pair: Pair) -> None:
    """libzmq alone would queue the parts of an unfinished message without limit (measured: ~400 MB/s)."""
    assert (await py(pair.a, "kept = 'state'")).status == "ok"
    await pair.a.write_file("endless.py", ENDLESS_MESSAGE.encode())
    watch = RssWatch()
    attack = asyncio.ensure_future(sh(pair.a, "timeout 20 python3 endless.py /sbx/kernel-2", timeout_s=40))
    latencies = await bystander_answers(pair.b, attack)
    outcome = await attack
    grew_mb = await watch.stop()
    print(f"\nendless message: {outcome.output.strip()}; host RSS +{grew_mb} MB")
    assert "cut off after" in outcome.output, outcome
    sent = int(outcome.output.split("cut off after ")[1].split()[0])
    assert sent < 64 * 1024 * 1024, outcome  # the relay stopped it near the message cap
    assert grew_mb < 150, f"the host's memory grew by {grew_mb} MB"
    after = await py(pair.a, "'kept' in globals()")
    assert (after.status, after.result) == ("ok", "False"), after  # replaced before the next cell
    assert max(latencies) < 30


async def test_honest_large_output_still_arrives_truncated_not_as_a_breach(pair: Pair) -> None:
    """One print far above the message cap, and a display above it: the kernel sends them within the cap."""
    result = await py(
        pair.a,
        "print('x' * 30_000_000)\ndisplay({'image/png': 'A' * 20_000_000}, raw=True)\n'done'",
        timeout_s=60,
    )
    assert (result.status, result.result) == ("ok", "'done'"), result.error
    assert result.truncated and "[... output truncated:" in result.stdout
    assert result.display and "omitted" in result.display[0].data


# --- /sbx is read-only to the sandbox (item: /sbx not size-capped for a server that is not root) ----------

WRITE_ATTEMPTS = (
    "dd if=/dev/zero of={d}/fill bs=1k count=1",
    "touch {d}/new",
    "mkdir {d}/dir",
    "mkfifo {d}/fifo",
    "ln -s /etc/passwd {d}/link",
    "cp /etc/hostname {d}/kernel.json",
    "rm -f {d}/kernel-1 {d}/sbxd.sock",
    "mv {d}/sbxd.sock {d}/moved",
    "chmod 0777 {d}",
)


async def assert_sbx_is_read_only(sandbox: DockerSandbox) -> None:
    for directory in ("/sbx", "/sbx/guest"):
        for attempt in WRITE_ATTEMPTS:
            command = attempt.format(d=directory)
            result = await sh(sandbox, f"{command} 2>&1; echo rc=$?")
            assert "rc=0" not in result.output, f"{command!r} worked: {result.output!r}"
    cell = await py(
        sandbox,
        "import os\n"
        "refused = []\n"
        "for path in ('/sbx/x', '/sbx/guest/x'):\n"
        "    try:\n"
        "        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))\n"
        "    except PermissionError:\n"
        "        refused.append(path)\n"
        "print(len(refused), os.getuid() != os.stat('/sbx').st_uid)\n",
    )
    assert cell.stdout == "2 True\n", cell
    shared = _hostdirs.shared_dir(sandbox.host_dir)
    assert set(os.listdir(shared)) == {"kernel.json", "kernel-1", "kernel-2", "guest"}
    assert os.listdir(os.path.join(shared, "guest")) == ["sbxd.sock"]
    for path in (shared, os.path.join(shared, "guest")):
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, os.geteuid()), path


async def test_the_sandbox_can_create_nothing_in_sbx_without_a_tmpfs(pair: Pair) -> None:
    await assert_sbx_is_read_only(pair.a)
    mounts = await sh(pair.a, "grep ' /sbx ' /proc/self/mountinfo")
    assert " - tmpfs " not in mounts.output, mounts  # the layout alone protects the host's disk
    assert (await py(pair.b, "6 * 7")).result == "42"


async def test_swapping_the_guest_socket_for_a_link_to_another_sessions_fails(pair: Pair) -> None:
    """From inside A, point A's socket at B's (by its host path): the host must keep reaching A."""
    b_socket = _hostdirs.guest_socket(pair.b.host_dir)
    for shared_dir_mb in (0, 4):  # the layout of a server that is not root, and of one that mounts a tmpfs
        if shared_dir_mb:
            backend = DockerBackend(dataclasses.replace(pair.backend.config, node_id="n2", shared_dir_mb=4))
            victim = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-a"))
        else:
            backend, victim = pair.backend, pair.a
        try:
            if shared_dir_mb and os.geteuid() == 0:
                if backend.config.runtime == "runsc":  # gVisor's gofer serves /sbx: its mount is 9p inside
                    assert _hostdirs._is_mountpoint(_hostdirs.shared_dir(victim.host_dir))
                else:
                    mounts = await sh(victim, "grep ' /sbx ' /proc/self/mountinfo")
                    assert " - tmpfs " in mounts.output, mounts
            swap = await sh(
                victim,
                f"cd /sbx/guest && ln -sf {b_socket} sbxd.sock 2>&1; echo rc=$?;"
                f" ln -s {b_socket} /sbx/guest/.new 2>&1 && mv -f /sbx/guest/.new /sbx/guest/sbxd.sock; echo rc=$?",
            )
            assert "rc=0" not in swap.output, swap
            cell = await py(
                victim,
                "import os\n"
                "for attempt in (lambda: os.unlink('/sbx/guest/sbxd.sock'),\n"
                f"                lambda: os.symlink({b_socket!r}, '/sbx/guest/sbxd.sock'),\n"
                "                lambda: os.rename('/sbx/guest/sbxd.sock', '/sbx/guest/old')):\n"
                "    try:\n"
                "        attempt()\n"
                "        print('swapped')\n"
                "    except OSError as exc:\n"
                "        print(type(exc).__name__)\n",
            )
            assert "swapped" not in cell.stdout, cell
            who = await sh(victim, "echo $TOOLSERVER_SESSION")
            assert who.output.strip() == victim.info.session_id, who  # still A's own daemon
            await assert_sbx_is_read_only(victim)
        finally:
            if shared_dir_mb:
                await backend.close()
    assert (await sh(pair.b, "echo $TOOLSERVER_SESSION")).output.strip() == pair.b.info.session_id


async def test_destroying_a_sandbox_removes_its_directories_off_the_event_loop(pair: Pair) -> None:
    if pair.backend.config.runtime != "runc":
        pytest.skip("the host's own clean-up, the same under every runtime: runc's run covers it")
    extra = await pair.backend.create(SandboxSpec(limits=LIMITS, owner="tenant-c"))
    junk = os.path.join(extra.host_dir, "junk")  # what a sandbox could once leave in a writable /sbx

    def fill() -> None:
        os.mkdir(junk)
        for i in range(60_000):
            os.close(os.open(os.path.join(junk, str(i)), os.O_CREAT | os.O_WRONLY, 0o600))

    await asyncio.to_thread(fill)
    stalls: list[float] = []

    async def tick() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.01)
            stalls.append(time.monotonic() - started)

    ticker = asyncio.ensure_future(tick())
    started = time.monotonic()
    await pair.backend.destroy(extra.info.session_id)
    took = time.monotonic() - started
    ticker.cancel()
    await asyncio.gather(ticker, return_exceptions=True)
    print(f"\ndestroy with 60000 files: {took:.2f} s, longest event-loop stall {max(stalls):.3f} s")
    assert not os.path.exists(extra.host_dir)
    assert max(stalls) < 0.5, max(stalls)


async def test_kernel_restart_and_reattach_work_with_a_read_only_sbx(pair: Pair) -> None:
    assert (await py(pair.a, "gone = 1")).status == "ok"
    await bounded(pair.a.restart_python(), 90)
    fresh = await py(pair.a, "'gone' in globals()")
    assert (fresh.status, fresh.result) == ("ok", "False"), fresh
    assert (await py(pair.a, "kept = 5")).status == "ok"
    # A server restart: the old backend's connections go (its containers stay), a new one re-attaches.
    old = pair.backend
    for sandbox in (pair.a, pair.b):
        await sandbox.close()
    new = DockerBackend(old.config)
    ids = {pair.a.info.session_id, pair.b.info.session_id}
    report = await bounded(new.reconcile(ids), 120)
    assert set(report["attached"]) == ids, report
    old._sandboxes.clear()  # the old server is gone; the fixture closes the new one
    pair.backend, pair.a, pair.b = (
        new,
        await new.get(pair.a.info.session_id),
        await new.get(pair.b.info.session_id),
    )
    kept = await py(pair.a, "kept")
    assert (kept.status, kept.result) == ("ok", "5"), kept
    await assert_sbx_is_read_only(pair.a)
