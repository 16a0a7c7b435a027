"""Live sandboxes benchmark: first byte of a streamed command, and HTTP through /ports/ next to direct.

    python -m bench.live_bench [--requests N] [--concurrency C]

Starts its own `toolserver up` (temporary TOOLSERVER_HOME, a free port on 127.0.0.1), makes a session, starts
`python3 -m http.server` in it through the processes API, and measures in one run:

- a streamed `echo first; sleep 1; echo second`: time to the first `stdout` event and to the `result`, next to
  the same command not streamed (whose first byte is its last);
- GET of a small file through `/v1/sessions/{id}/ports/8000/` (the API key, Ray Serve, the replica's proxy,
  the guest daemon's splice), and "direct": the same GET from this process straight through the guest daemon's
  socket (the sandbox has network `none`, so there is no more direct path to its port); latency p50/p90 of
  sequential calls and requests/s of `--concurrency` workers each.

Progress goes to standard error, the table to standard output; everything started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import glob
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpcore
import httpx

from bench._common import machine_summary, stop_server
from bench._stats import format_ms, percentiles, print_table

Call = Callable[[], Awaitable[None]]


def _log(message: str) -> None:
    print(f"[live_bench] {message}", file=sys.stderr, flush=True)


async def _latencies(call: Call, n: int) -> list[float]:
    for _ in range(3):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _rate(call: Call, total: int, workers: int) -> float:
    left = [total]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return total / (time.perf_counter() - started)


async def _first_byte(client: httpx.AsyncClient, session: str) -> tuple[float, float, float]:
    """(ms to the first stdout event, ms to the result) of a streamed command, and ms of the plain call."""
    body = {"command": "echo first; sleep 1; echo second", "stream": True}
    started = time.perf_counter()
    first = end = 0.0
    async with client.stream("POST", f"/v1/sessions/{session}/shell", json=body) as reply:
        async for line in reply.aiter_lines():
            if line == "event: stdout" and not first:
                first = time.perf_counter() - started
            elif line == "event: result":
                end = time.perf_counter() - started
    plain_started = time.perf_counter()
    await client.post(f"/v1/sessions/{session}/shell", json={"command": "echo first; sleep 1; echo second"})
    return first * 1000, end * 1000, (time.perf_counter() - plain_started) * 1000


def _direct_pool(socket_path: str, port: int) -> httpcore.AsyncConnectionPool:
    from sandbox._guest_client import GuestClient
    from toolserver.http.port_proxy import _ThroughGuest

    return httpcore.AsyncConnectionPool(
        network_backend=_ThroughGuest(GuestClient(socket_path), port), max_connections=64
    )


async def _measure(server_url: str, key: str, args: argparse.Namespace) -> list[list[str]]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server_url, headers=headers, timeout=120, limits=limits) as client:
        session = (await client.post("/v1/sessions", json={})).json()["id"]
        await client.put(f"/v1/sessions/{session}/files/site/small.txt", content=b"x" * 1024)
        proc = (
            await client.post(
                f"/v1/sessions/{session}/processes",
                json={"command": "python3 -m http.server 8000 --bind 127.0.0.1", "cwd": "site"},
            )
        ).json()
        offset, seen = 0, ""
        while "Serving HTTP" not in seen:
            out = (
                await client.get(
                    f"/v1/sessions/{session}/processes/{proc['pid']}/output",
                    params={"offset": offset, "wait_s": 20},
                )
            ).json()
            seen += "".join(c["data"] for c in out["chunks"])
            offset = out["next_offset"]
        _log("first byte of a streamed command")
        firsts = [await _first_byte(client, session) for _ in range(args.streams)]
        rows = [
            [
                "streamed shell: first stdout event",
                format_ms(percentiles([f[0] for f in firsts])["p50"]),
                "",
                "",
            ],
            ["streamed shell: result event", format_ms(percentiles([f[1] for f in firsts])["p50"]), "", ""],
            [
                "same command, not streamed (first byte = last)",
                format_ms(percentiles([f[2] for f in firsts])["p50"]),
                "",
                "",
            ],
        ]

        async def through_api() -> None:
            reply = await client.get(f"/v1/sessions/{session}/ports/8000/small.txt")
            assert reply.status_code == 200 and len(reply.content) == 1024, reply.status_code

        socket_path = _socket_of(session)
        pool = _direct_pool(socket_path, 8000)

        async def direct() -> None:
            reply = await pool.request("GET", "http://127.0.0.1:8000/small.txt")
            assert reply.status == 200 and len(reply.content) == 1024, reply.status

        for name, call in (
            ("GET 1 KiB via /ports/ (HTTP API)", through_api),
            ("GET 1 KiB direct (guest socket)", direct),
        ):
            _log(name)
            lat = percentiles(await _latencies(call, args.requests))
            rate = await _rate(call, args.requests, args.concurrency)
            rows.append([name, format_ms(lat["p50"]), format_ms(lat["p90"]), f"{rate:.0f}"])
        await pool.aclose()
        await client.delete(f"/v1/sessions/{session}")
    return rows


def _socket_of(session: str) -> str:
    from sandbox.config import SandboxConfig

    found = glob.glob(
        os.path.join(SandboxConfig().runtime_dir, "*", "*", session, "**", "sbxd.sock"), recursive=True
    )
    if not found:
        raise RuntimeError(f"no guest socket of {session} under {SandboxConfig().runtime_dir}")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="calls per latency row and per rate row")
    parser.add_argument("--concurrency", type=int, default=8, help="workers of the requests/s column")
    parser.add_argument("--streams", type=int, default=5, help="streamed commands for the first-byte rows")
    args = parser.parse_args(argv)
    from tests.integration.serverproc import ServerProcess

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    home = Path(tempfile.mkdtemp(prefix="tsbench-live-"))
    server = ServerProcess(home, env={"TOOLSERVER_POOL_SIZE": "1", "TOOLSERVER_PORT_MAX_CONNECTIONS": "64"})
    try:
        _log(f"starting toolserver up on 127.0.0.1:{server.port}")
        server.start(timeout_s=600)
        rows = asyncio.run(_measure(server.url, server.admin_key, args))
    finally:
        stop_server(server)
    print(f"live sandboxes, {when}; {machine_summary()}")
    print(
        f"requests per row: {args.requests}, concurrency {args.concurrency}, streamed commands: {args.streams}"
    )
    print_table("live sandboxes", ["what", "p50 ms", "p90 ms", "req/s"], rows)
    print(json.dumps({"rows": rows}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
