"""What the egress proxy costs: one download of a file from a loopback server, direct and through proxies.

    python -m bench.egress_bench [--mb 10] [--runs 5]

Rows (p50 of `--runs` downloads, each read whole with Python's urllib):
- host, direct: the client on the host, no proxy (the floor);
- host, through proxy.py (a peer from PyPI, when importable: `pip install --target /tmp/tsbench-peers proxy.py`
  and PYTHONPATH=/tmp/tsbench-peers), the proxy a user might put in front of a sandbox instead;
- sandbox, loopback inside: a server and the client both inside one sandbox (the sandbox's own cost);
- sandbox, through our egress proxy: network "egress", the guest forwarder, the node's proxy, with the byte
  cap lifted and at the default cap (TOOLSERVER_SANDBOX_EGRESS_BYTES_PER_S).
The file is served on 127.0.0.2, which the operator's allow (TOOLSERVER_SANDBOX_EGRESS_ALLOW) opens for the proxy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from bench._common import machine_summary
from bench._stats import format_ms, percentiles, print_table
from sandbox.base import Limits, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend
from sandbox.egress import EgressLimits
from toolserver.outbound.egress import EgressPolicy

HOST = "127.0.0.2"
CLIENT = """
import sys, time, urllib.request
opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if sys.argv[2] == "direct" else []))
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    size = len(opener.open(sys.argv[1], timeout=120).read())
    print(f"{(time.perf_counter() - started) * 1000:.3f} {size}")
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _file_server(size_mb: int) -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="egress-bench-")
    with open(os.path.join(root, "blob"), "wb") as fh:
        fh.write(os.urandom(size_mb * 1024 * 1024))
    server = ThreadingHTTPServer((HOST, 0), partial(_Quiet, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{HOST}:{server.server_address[1]}"
    finally:
        server.shutdown()


def _host_downloads(url: str, runs: int, proxy: str | None = None) -> list[float]:
    handlers = [urllib.request.ProxyHandler({"http": proxy} if proxy else {})]
    opener = urllib.request.build_opener(*handlers)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        opener.open(url, timeout=120).read()
        times.append((time.perf_counter() - started) * 1000)
    return times


@contextlib.contextmanager
def _proxy_py() -> Iterator[str | None]:
    """proxy.py on a free loopback port, or None when it is not importable."""
    try:
        import proxy  # noqa: F401
    except ImportError:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port), "--num-workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


async def _sandbox_rows(where: str, size_mb: int, runs: int, image: str) -> list[tuple[str, list[float]]]:
    rows: list[tuple[str, list[float]]] = []
    limits = Limits(memory_mb=512, pids=128, disk_mb=64, tmp_mb=max(64, size_mb * 2 + 8))
    for label, cap in (("sandbox, through our egress proxy (no byte cap)", 1 << 40), ("default cap", None)):
        egress = EgressLimits(operator_allow=where, **({} if cap is None else {"bytes_per_s": cap}))
        if cap is None:
            label = f"sandbox, through our egress proxy (cap {egress.bytes_per_s / 1048576:g} MiB/s)"
        backend = DockerBackend(
            SandboxConfig(
                image=image, instance_id=f"egbench-{secrets.token_hex(3)}", node_id="b", egress=egress
            ),
            egress_check=EgressPolicy.parse(where),
        )
        try:
            box = await backend.create(SandboxSpec(limits=limits, network="egress", egress=(where,)))
            await box.write_file("client.py", CLIENT.encode())
            out = await box.shell(
                f"python3 /workspace/client.py http://{where}/blob proxy {runs + 1}", timeout_s=600
            )
            rows.append((label, [float(line.split()[0]) for line in out.output.split("\n") if line][1:]))
            if cap is not None:  # the sandbox's own cost: a server and the client both inside it
                await box.shell(
                    f"head -c {size_mb * 1048576} /dev/urandom > /tmp/blob && cd /tmp &&"
                    " (python3 -m http.server 8099 --bind 127.0.0.1 >/dev/null 2>&1 &) && sleep 1.5"
                )
                local = await box.shell(
                    f"python3 /workspace/client.py http://127.0.0.1:8099/blob direct {runs + 1}", 600
                )
                rows.insert(
                    0,
                    (
                        "sandbox, loopback inside",
                        [float(x.split()[0]) for x in local.output.split("\n") if x][1:],
                    ),
                )
        finally:
            await backend.close()
    return rows


def main() -> None:
    """Run the rows and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=10, help="size of the file (MiB)")
    parser.add_argument("--runs", type=int, default=5, help="downloads per row")
    parser.add_argument("--image", default=SandboxConfig().image)
    args = parser.parse_args()
    print(machine_summary(), flush=True)
    with _file_server(args.mb) as where, _proxy_py() as peer:
        url = f"http://{where}/blob"
        _host_downloads(url, 1)  # warm the page cache
        rows = [("host, direct", _host_downloads(url, args.runs))]
        if peer is not None:
            _host_downloads(url, 1, peer)
            rows.append(("host, through proxy.py (peer)", _host_downloads(url, args.runs, peer)))
        else:
            print("proxy.py is not importable: its row is left out (see the module's docstring)")
        rows += asyncio.run(_sandbox_rows(where, args.mb, args.runs, args.image))
    floor = percentiles(rows[0][1])["p50"]
    table = []
    for label, times in rows:
        p50 = percentiles(times)["p50"]
        table.append([label, format_ms(p50), f"{args.mb / (p50 / 1000):.0f}", f"{p50 / floor:.2f}x"])
    print_table(
        f"download of {args.mb} MiB over HTTP, p50 of {args.runs}",
        ["path", "p50 ms", "MiB/s", "vs host direct"],
        table,
    )


if __name__ == "__main__":
    main()
