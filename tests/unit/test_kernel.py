"""KernelConnection against a real ipykernel started on the host over the ipc transport (no Docker)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import AsyncIterator

import pytest

from sandbox._kernel import (
    DISPLAY_LIMIT,
    KernelConnection,
    message_cap,
    write_connection_files,
)
from sandbox._output import CappedOutput, cap_text, truncation_marker
from sandbox.base import Display, PythonResult
from sandbox.errors import SandboxUnavailable
from sandbox.image import GUEST_DIR

KERNEL_LAUNCHER = str(GUEST_DIR / "sbxkernel.py")


class HostKernel:
    """An ipykernel subprocess and a connection to it; the callbacks play the in-container daemon."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: KernelConnection) -> None:
        self.proc = proc
        self.conn = conn
        self.interrupts = 0

    async def interrupt(self) -> None:
        self.interrupts += 1
        self.proc.send_signal(signal.SIGINT)

    async def is_alive(self) -> bool:
        return self.proc.poll() is None

    async def run(self, code: str, timeout_s: float = 10.0, output_limit: int = 64 * 1024) -> PythonResult:
        return await self.conn.execute(
            code, timeout_s, interrupt=self.interrupt, is_alive=self.is_alive, output_limit=output_limit
        )


async def _start_kernel() -> AsyncIterator[HostKernel]:
    tmp = tempfile.mkdtemp(dir="/tmp")  # short: unix socket paths are limited to 107 bytes
    host_file = write_connection_files(tmp, container_dir=tmp)
    proc = subprocess.Popen(
        [sys.executable, KERNEL_LAUNCHER, "-f", os.path.join(tmp, "kernel.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        conn = await KernelConnection.connect(host_file, ready_timeout_s=20)
        try:
            yield HostKernel(proc, conn)
        finally:
            await conn.close()
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
async def kernel() -> AsyncIterator[HostKernel]:
    async for k in _start_kernel():
        yield k


@pytest.fixture
async def fresh_kernel() -> AsyncIterator[HostKernel]:
    async for k in _start_kernel():
        yield k


def _tiny_png() -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x7f")  # filter byte, one pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_connection_files_have_both_views_and_are_readable(tmp_path: os.PathLike[str]) -> None:
    host_dir = str(tmp_path)
    host_file = write_connection_files(host_dir)
    with open(os.path.join(host_dir, "kernel.json")) as f:
        container = json.load(f)
    with open(host_file) as f:
        host = json.load(f)
    assert container["ip"] == "/sbx/kernel"
    assert host["ip"] == f"{host_dir}/zk"  # the host's own sockets
    assert host["relay_ip"] == f"{host_dir}/kernel"  # where the kernel connects
    assert container["max_message_bytes"] == host["max_message_bytes"] == message_cap()
    assert container["transport"] == host["transport"] == "ipc"
    assert container["key"] == host["key"] and len(bytes.fromhex(host["key"])) == 32
    assert host["signature_scheme"] == "hmac-sha256" and host["kernel_name"] == "python3"
    ports = [host[f"{name}_port"] for name in ("shell", "iopub", "stdin", "control", "hb")]
    assert len(set(ports)) == 5
    for path in (host_file, os.path.join(host_dir, "kernel.json")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert write_connection_files(host_dir) == host_file
    with open(host_file) as f:
        assert json.load(f)["key"] != host["key"]


def test_streamed_output_is_capped_as_cap_text_caps_the_whole() -> None:
    chunks = [f"line {i} \u00e9\u20ac\n" for i in range(5000)]
    capped = CappedOutput(100)
    for chunk in chunks:
        capped.add_text(chunk)
    assert capped.text() == cap_text("".join(chunks), 100)
    small = CappedOutput(100)
    small.add_text("short")
    assert small.text() == ("short", False)


async def test_connect_times_out_without_a_kernel() -> None:
    tmp = tempfile.mkdtemp(dir="/tmp")
    try:
        started = time.monotonic()
        with pytest.raises(SandboxUnavailable):
            await KernelConnection.connect(write_connection_files(tmp, tmp), ready_timeout_s=0.5)
        assert time.monotonic() - started < 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def test_state_persists_across_cells(kernel: HostKernel) -> None:
    assert (await kernel.run("x = 41")).status == "ok"
    result = await kernel.run("x + 1")
    assert result == PythonResult(status="ok", result="42")


async def test_stdout_and_stderr_are_separate(kernel: HostKernel) -> None:
    result = await kernel.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nprint('out2')")
    assert result.status == "ok"
    assert result.stdout == "out\nout2\n"
    assert result.stderr == "err\n"
    assert result.result is None


async def test_result_text_and_its_other_mime_types(kernel: HostKernel) -> None:
    assert (await kernel.run("'a' * 3")).result == "'aaa'"
    result = await kernel.run(
        "class Html:\n"
        "    def _repr_html_(self): return '<b>hi</b>'\n"
        "    def __repr__(self): return 'Html()'\n"
        "Html()"
    )
    assert result.result == "Html()"
    assert result.display == [Display(mime="text/html", data="<b>hi</b>")]


async def test_error_has_a_plain_traceback(kernel: HostKernel) -> None:
    result = await kernel.run("def boom():\n    raise ValueError('bad value')\nprint('before')\nboom()")
    assert result.status == "error"
    assert result.stdout == "before\n"
    assert result.error is not None
    assert (result.error.ename, result.error.evalue) == ("ValueError", "bad value")
    text = "\n".join(result.error.traceback)
    assert "boom()" in text and "ValueError: bad value" in text
    assert "\x1b" not in text


async def test_rich_display_keeps_base64_and_drops_duplicate_text(kernel: HostKernel) -> None:
    png = base64.b64encode(_tiny_png()).decode()
    result = await kernel.run(
        "from IPython.display import Image, display\n"
        "import base64\n"
        f"display(Image(data=base64.b64decode('{png}')))\n"
        f"display({{'image/png': '{png}', 'text/plain': 'a picture'}}, raw=True)\n"
        "display({'text/plain': 'just text'}, raw=True)"
    )
    assert result.status == "ok"
    assert result.display == [
        Display(mime="image/png", data=png),
        Display(mime="image/png", data=png),
        Display(mime="text/plain", data="just text"),
    ]


async def test_display_data_is_capped_in_total(kernel: HostKernel) -> None:
    size = DISPLAY_LIMIT // 2 - 1024
    result = await kernel.run(
        f"blob = 'A' * {size}\nfor _ in range(3):\n    display({{'image/png': blob}}, raw=True)"
    )
    assert result.status == "ok"
    assert len(result.display) == 2
    assert result.truncated


async def test_timeout_interrupts_a_busy_loop_and_keeps_state(kernel: HostKernel) -> None:
    await kernel.run("kept = 'still here'")
    started = time.monotonic()
    result = await kernel.run("print('started', flush=True)\nwhile True:\n    pass", timeout_s=0.5)
    assert time.monotonic() - started < 2.5
    assert result.status == "timeout"
    assert result.stdout == "started\n"
    assert (await kernel.run("kept")).result == "'still here'"


async def test_timeout_interrupts_a_sleep_and_keeps_state(kernel: HostKernel) -> None:
    await kernel.run("kept2 = 2")
    interrupts = kernel.interrupts
    started = time.monotonic()
    result = await kernel.run("import time\ntime.sleep(100)", timeout_s=0.5)
    assert time.monotonic() - started < 2.5
    assert result.status == "timeout"
    assert kernel.interrupts == interrupts + 1
    assert (await kernel.run("kept2 * 21")).result == "42"


async def test_output_of_a_cell_that_ignored_the_interrupt_does_not_leak_into_the_next(
    kernel: HostKernel,
) -> None:
    code = (
        "import time\n"
        "try:\n"
        "    time.sleep(100)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(3)\n"  # longer than the interrupt grace period
        "    print('late')\n"
        "'late result'"
    )
    result = await kernel.run(code, timeout_s=0.3)
    assert result.status == "timeout"
    assert "late" not in result.stdout
    following = await kernel.run("print('next')\n'next result'")
    assert following == PythonResult(status="ok", stdout="next\n", result="'next result'")


async def test_output_over_the_limit_is_truncated_with_a_marker(kernel: HostKernel) -> None:
    result = await kernel.run(
        "import sys\nprint('o' * 5000)\nprint('e' * 5000, file=sys.stderr)\n'r' * 5000", output_limit=1000
    )
    assert result.status == "ok" and result.truncated
    for text in (result.stdout, result.stderr, result.result):
        assert text is not None
        assert "output truncated" in text
        assert len(text.encode()) <= 1000 + len(truncation_marker(10**6))
    assert result.stdout.startswith("o" * 700)


async def test_many_small_prints_arrive_complete(kernel: HostKernel) -> None:
    result = await kernel.run("for i in range(20000):\n    print(i)", timeout_s=20, output_limit=1 << 20)
    assert result.status == "ok" and not result.truncated
    lines = result.stdout.splitlines()
    assert lines == [str(i) for i in range(20000)]


async def test_huge_output_is_bounded(kernel: HostKernel) -> None:
    result = await kernel.run(
        "for i in range(200):\n    print('x' * 100_000)", timeout_s=20, output_limit=4096
    )
    assert result.status == "ok" and result.truncated
    assert len(result.stdout) < 4096 + 200
    omitted = 200 * 100_001 - 4096
    assert truncation_marker(omitted) in result.stdout


async def test_round_trip_latency(kernel: HostKernel) -> None:
    timings = []
    for _ in range(200):
        started = time.perf_counter()
        result = await kernel.run("1+1")
        timings.append(time.perf_counter() - started)
        assert result.result == "2"
    timings.sort()
    print(f"\n1+1 round trip: p50 {timings[99] * 1000:.2f} ms, p95 {timings[189] * 1000:.2f} ms")


async def test_kernel_death_is_reported_quickly(fresh_kernel: HostKernel) -> None:
    assert (await fresh_kernel.run("y = 1")).status == "ok"
    started = time.monotonic()
    result = await fresh_kernel.run("import os\nos._exit(1)")
    assert time.monotonic() - started < 3
    assert result.status == "error"
    assert result.error is not None and result.error.ename == "KernelDied"
    assert fresh_kernel.conn.kernel_died
    started = time.monotonic()
    again = await fresh_kernel.run("y")
    assert time.monotonic() - started < 0.1
    assert again.error is not None and again.error.ename == "KernelDied"
