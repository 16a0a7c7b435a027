"""API benchmark: sandbox calls through `toolserver up`'s HTTP API next to the same calls on the sandbox manager.

    python -m bench.api_bench [--requests N] [--concurrency C] [--fast-ingress] [--quick]

Starts its own `toolserver up` (temporary TOOLSERVER_HOME, a warm pool of POOL_SIZE, a free port on 127.0.0.1)
and a SandboxManager with the Docker backend in this process, measures each call of issue 11's goal through both
(closed loop, the caller's wall clock), the peers (autogen-ext, llm-sandbox) when installed, and prints one table
with the issue's targets marked met / NOT met. Everything it started is stopped at the end, also on errors,
Ctrl-C and SIGTERM. Progress goes to standard error; the tables go to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench import _api_report as report
from bench._api_report import Measured, PeerRow
from bench._common import interrupt, machine_summary, remove_containers_named, stop_server, sweep_instance
from bench.server_bench import ADD_SOURCE, CpuMeter, Sample, drive

POOL_SIZE = 4  # warm sandboxes of the server and of the direct manager; creates wait for a full pool
INSTANCE = f"bench-api-{os.getpid()}"  # the direct manager's containers: this run's and nothing else
START_TIMEOUT_S = 600.0  # a loaded 2-core machine can take minutes to bring Ray and the pool up
PEERS = {"autogen-ext": "autogen_ext", "llm-sandbox": "llm_sandbox"}
INSTALL_PEERS = 'pip install -e ".[bench]"  (in its own virtualenv: see bench/README.md)'


class WrongResult(Exception):
    """A call answered 2xx, but not with what `true`, `1+1` or add(2, 3) must give."""


def _log(message: str) -> None:
    print(f"[api_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _expect(ok: bool, what: str, got: Any) -> None:
    if not ok:
        raise WrongResult(f"{what} answered {str(got)[:160]}")


# -- the calls, through the API and on the manager -------------------------------------------------------


Send = Callable[[], Awaitable[int]]


def api_calls(client: httpx.AsyncClient, session_id: str) -> dict[str, Send]:
    """One sender per call of the goal through HTTP; each checks the answer, not only the status."""
    base = f"/v1/sessions/{session_id}"

    async def shell() -> int:
        r = await client.post(f"{base}/shell", json={"command": "true"})
        _expect(r.status_code != 200 or r.json().get("exit_code") == 0, "shell `true`", r.text)
        return r.status_code

    async def python() -> int:
        r = await client.post(f"{base}/python", json={"code": "1+1"})
        _expect(r.status_code != 200 or r.json().get("result") == "2", "python `1+1`", r.text)
        return r.status_code

    async def get_session() -> int:
        return (await client.get(base)).status_code

    async def healthz() -> int:
        return (await client.get("/healthz")).status_code

    async def tool() -> int:
        r = await client.post(
            "/v1/tools/add/call", json={"arguments": {"a": 2, "b": 3}, "session_id": session_id}
        )
        _expect(r.status_code != 200 or r.json().get("result") == 5, "add(2, 3)", r.text)
        return r.status_code

    return {"shell": shell, "python": python, "get_session": get_session, "healthz": healthz, "tool": tool}


def direct_calls(manager: Any, session_id: str) -> dict[str, Send]:
    """The same calls on the SandboxManager in this process (no HTTP, no Ray, no registry)."""
    from toolserver.tools.python import build_invocation, new_marker, parse_invocation_output

    async def shell() -> int:
        result = await manager.shell(session_id, "true")
        _expect(result.exit_code == 0, "shell `true`", result)
        return 200

    async def python() -> int:
        result = await manager.python(session_id, "1+1")
        _expect(result.status == "ok" and result.result == "2", "python `1+1`", result)
        return 200

    async def get_session() -> int:
        await manager.get(session_id)
        return 200

    async def healthz() -> int:
        await manager.stats()
        return 200

    async def tool() -> int:
        marker = new_marker()
        cell = build_invocation(ADD_SOURCE, "add", {"a": 2, "b": 3}, marker=marker)
        result = await manager.python(session_id, cell)
        _expect(parse_invocation_output(result.stdout, marker) == 5, "add(2, 3)", result)
        return 200

    return {"shell": shell, "python": python, "get_session": get_session, "healthz": healthz, "tool": tool}


async def measure(
    send: Send, requests: int, concurrency: int, args: argparse.Namespace, meter: CpuMeter
) -> Sample:
    """An unmeasured warm-up, then `requests` calls from `concurrency` closed-loop workers."""
    await drive(send, args.warmup, min(concurrency, args.warmup), args.max_seconds, CpuMeter(None))
    return await drive(send, requests, concurrency, args.max_seconds, meter)


async def timed_creates(
    count: int,
    wait_ready: Callable[[], Awaitable[None]],
    create: Callable[[], Awaitable[str]],
    remove: Callable[[str], Awaitable[Any]],
    meter: CpuMeter,
) -> Sample:
    """`count` session creates, each from a full pool (the wait and the removal after are not timed)."""
    sample = Sample(server_cpu_s=0.0 if meter.server_sid else None)
    for _ in range(count):
        await wait_ready()
        before = meter.snapshot()
        started = time.perf_counter()
        try:
            session_id = await create()
        except Exception as exc:
            sample.errors += 1
            if len(sample.error_examples) < 3:
                sample.error_examples.append(f"{type(exc).__name__}: {str(exc)[:200]}")
            continue
        sample.latencies_ms.append((time.perf_counter() - started) * 1000)
        sample.elapsed_s += time.perf_counter() - started
        if sample.server_cpu_s is not None:
            sample.server_cpu_s += (meter.snapshot()[1] - before[1]) / meter.hz
        await remove(session_id)
    return sample


async def _server_pool_full(client: httpx.AsyncClient, size: int, timeout_s: float = 240.0) -> None:
    """Wait until /healthz counts `size` warm sandboxes (its summary is at most 1 s old)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with_pool = (await client.get("/healthz")).json().get("pool_size", 0)
        if with_pool >= size:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the server's pool did not refill to {size} in {timeout_s:.0f} s")


async def _created(response: Awaitable[httpx.Response]) -> str:
    r = await response
    if r.status_code != 201:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    return str(r.json()["id"])


async def bench_api_and_direct(server: Any, args: argparse.Namespace, measured: list[Measured]) -> None:
    """Every call of the goal through the API and on the manager directly, interleaved, into `measured`."""
    from sandbox.base import SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.manager import SandboxManager

    server_meter = CpuMeter(os.getsid(server.proc.pid))
    direct_meter = CpuMeter(None)
    manager = SandboxManager(SandboxConfig(pool_size=POOL_SIZE, instance_id=INSTANCE, node_id="bench-api"))
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, timeout=120) as client:
        try:
            _log("registering the python tool `add`, opening a session on each side, filling both pools")
            r = await client.post("/v1/tools", json={"name": "add", "kind": "python", "source": ADD_SOURCE})
            if r.status_code != 201:
                raise RuntimeError(f"registering add: HTTP {r.status_code} {r.text[:300]}")
            api_session = await _created(client.post("/v1/sessions", json={}))
            await manager.start()
            await manager.pool.wait_full(240)
            direct_session = (await manager.create(SandboxSpec())).session_id
            await manager.pool.wait_full(240)
            await _server_pool_full(client, POOL_SIZE)
            through_api, on_manager = api_calls(client, api_session), direct_calls(manager, direct_session)
            for key in report.LATENCY_CALLS:
                _log(f"{key}: {args.requests} through the API, then on the manager")
                api = await measure(through_api[key], args.requests, 1, args, server_meter)
                direct = await measure(on_manager[key], args.requests, 1, args, direct_meter)
                measured.append(Measured(key, api, direct))
            c, count = args.concurrency, args.throughput_requests
            _log(f"throughput: {count} shell `true` at c={c} through the API, then on the manager")
            api = await measure(through_api["shell"], count, c, args, server_meter)
            direct = await measure(on_manager["shell"], count, c, args, direct_meter)
            measured.append(Measured("throughput", api, direct, concurrency=c))
            _log(f"warm create: {args.creates} through the API, then on the manager (each from a full pool)")
            api = await timed_creates(
                args.creates,
                lambda: _server_pool_full(client, POOL_SIZE),
                lambda: _created(client.post("/v1/sessions", json={})),
                lambda sid: client.delete(f"/v1/sessions/{sid}"),
                server_meter,
            )

            async def direct_create() -> str:
                return (await manager.create(SandboxSpec())).session_id

            direct = await timed_creates(
                args.creates,
                lambda: manager.pool.wait_full(240),
                direct_create,
                manager.destroy,
                direct_meter,
            )
            measured.append(Measured("create", api, direct))
        finally:
            await manager.shutdown()


# -- the peers: sandbox_bench's own measurements of them ---------------------------------------------------


def missing_peers() -> list[str]:
    """The peers whose package is not importable here."""
    return [name for name, module in PEERS.items() if importlib.util.find_spec(module) is None]


def bench_peers(calls: int) -> tuple[list[PeerRow], list[str]]:
    """autogen-ext's and llm-sandbox's shell and Python round trips, as bench.sandbox_bench measures them."""
    from bench import sandbox_bench
    from sandbox.config import DEFAULT_IMAGE

    peer_args = argparse.Namespace(iterations=1, calls=calls, image=DEFAULT_IMAGE)
    found = sandbox_bench.Report()
    if "autogen-ext" not in missing_peers():
        asyncio.run(sandbox_bench.bench_autogen(peer_args, found))
    if "llm-sandbox" not in missing_peers():
        asyncio.run(sandbox_bench.bench_llm_sandbox(peer_args, found))
    rows = [
        PeerRow(row.system, row.measurement, row.stats, row.note)
        for row in found.rows
        if "round trip" in row.measurement or row.stats is None
    ]
    return rows, found.notes


def _sweep_peers() -> None:
    from bench import sandbox_bench

    remove_containers_named(sandbox_bench.PEER_PREFIX)
    shutil.rmtree(sandbox_bench.PEER_TMP, ignore_errors=True)


# -- main ----------------------------------------------------------------------------------------------------


def _start(server: Any, attempts: int = 3) -> None:
    """`server.start`, again when Ray gave up on its own start (it waits 30 s for the raylet, on any load)."""
    for attempt in range(1, attempts + 1):
        try:
            server.start(timeout_s=START_TIMEOUT_S)
            return
        except RuntimeError as exc:
            if "timed out during startup" not in str(exc) or attempt == attempts:
                raise
            _log(
                f"Ray's start timed out (attempt {attempt} of {attempts}, load {os.getloadavg()[0]:.1f}): again"
            )
            stop_server(server)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.api_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="measured calls per latency row (200)")
    parser.add_argument("--concurrency", type=int, default=16, help="workers of the throughput row")
    parser.add_argument(
        "--fast-ingress", action="store_true", help="TOOLSERVER_FAST_INGRESS=true (HAProxy) for the server"
    )
    parser.add_argument("--quick", action="store_true", help="few iterations: a smoke test of the benchmark")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 20 if args.quick else 200
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be >= 1")
    if args.fast_ingress:
        from toolserver.serve.ingress import haproxy_binary

        if haproxy_binary() is None:
            parser.error("--fast-ingress needs the haproxy binary (Debian: apt-get install haproxy)")
    args.warmup = 3 if args.quick else 10
    args.creates = 3 if args.quick else max(3, min(20, args.requests // 10))
    args.throughput_requests = max(4 * args.requests, 4 * args.concurrency)
    args.peer_calls = 10 if args.quick else min(args.requests, 100)
    args.max_seconds = 30.0 if args.quick else 120.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    from tests.integration.serverproc import ServerProcess

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine, started = machine_summary(), time.perf_counter()
    env = {"TOOLSERVER_POOL_SIZE": str(POOL_SIZE)}
    if args.fast_ingress:
        env["TOOLSERVER_FAST_INGRESS"] = "true"
    home = Path(tempfile.mkdtemp(prefix="tsbench-api-"))
    server = ServerProcess(home, env=env)
    measured: list[Measured] = []
    peers: list[PeerRow] = []
    notes: list[str] = []
    missing = missing_peers()
    if missing:
        notes.append(f"peers skipped, not installed: {', '.join(missing)}; to measure them: {INSTALL_PEERS}")
        _log(notes[-1])
    status, up = 0, False
    try:
        _log(
            f"starting toolserver up on 127.0.0.1:{server.port} ({' '.join(f'{k}={v}' for k, v in env.items())})"
        )
        t = time.perf_counter()
        _start(server)
        up = True
        notes.append(f"server started in {time.perf_counter() - t:.0f} s")
        asyncio.run(bench_api_and_direct(server, args, measured))
        if len(missing) < len(PEERS):
            _log(f"peers: {args.peer_calls} shell and Python round trips each (bench.sandbox_bench's code)")
            peers, peer_notes = bench_peers(args.peer_calls)
            notes.extend(peer_notes)
    except KeyboardInterrupt:
        _log("interrupted: stopping the server, then printing what was measured")
        notes.append("INTERRUPTED: the table is partial.")
        status = 130
    except Exception as exc:
        _log(f"failed: {type(exc).__name__}: {exc}")
        notes.append(f"FAILED: {type(exc).__name__}: {str(exc)[:500]}")
        if up:  # a failure after start-up (a failed start already quotes the log)
            notes.append(f"server log tail: {server.tail(5)}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        left = sweep_instance(INSTANCE)
        _sweep_peers()
        t = time.perf_counter()
        stop_server(server)
        notes.append(
            f"server stopped in {time.perf_counter() - t:.0f} s; direct manager containers left: {left}"
        )
        shutil.rmtree(home, ignore_errors=True)
    print(f"API benchmark (issue 11), {when}")
    print(machine)
    print(
        f"server: toolserver up, {' '.join(f'{k}={v}' for k, v in env.items())}; {report.settings_line(args)}"
    )
    print()
    print(report.render(measured, peers, notes))
    print(
        f"- total run time {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
