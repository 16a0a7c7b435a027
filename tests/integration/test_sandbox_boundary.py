"""Attacks from inside a real sandbox on what the host shares with it: the kernel's sockets and /sbx.

The backend runs in this test process, so its memory is this process's: a flood that the host buffered
would show in VmRSS. Sandbox B, on the same backend, must keep answering while A attacks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import docker
import pytest
import pytest_asyncio

from sandbox import _labels
from sandbox.base import Limits, PythonResult, SandboxSpec, ShellResult
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend, DockerSandbox

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
async def pair(docker_engine: docker.DockerClient, sandbox_image: str) -> AsyncIterator[Pair]:
    config = SandboxConfig(
        image=sandbox_image,
        instance_id=f"bndtest-{secrets.token_hex(4)}",
        node_id="n1",
        ready_timeout_s=30,
        shared_dir_mb=0,  # what a server that is not root gets: no tmpfs under /sbx
    )
    backend = DockerBackend(config)
    try:
        a = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-a"))
        b = await backend.create(SandboxSpec(owner="tenant-b"))
        yield Pair(backend, a, b)
    finally:
        await backend.close()
        for container in docker_engine.containers.list(
            all=True, filters=_labels.instance_filter(config.instance_id)
        ):
            container.remove(force=True)
        instance_dir = os.path.join(config.runtime_dir, config.instance_id)
        if os.path.isdir(instance_dir):
            os.rmdir(instance_dir)


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        pytest.fail(f"no answer within {seconds:g} s")


async def sh(sandbox: DockerSandbox, command: str, timeout_s: float = 20.0) -> ShellResult:
    return await bounded(sandbox.shell(command, timeout_s=timeout_s), timeout_s + 30)


async def py(sandbox: DockerSandbox, code: str, timeout_s: float = 20.0) -> PythonResult:
    return await bounded(sandbox.python(code, timeout_s=timeout_s), timeout_s + 60)


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
    watch = RssWatch()
    flood = asyncio.ensure_future(
        py(
            pair.a,
            "import zmq\n"
            "sock = get_ipython().kernel.iopub_thread.socket\n"
            "frame = b'x' * 200_000_000\n"
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
