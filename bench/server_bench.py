"""Tool-server benchmark: trivial tool calls through Ray Serve, through the FastAPI app alone, and in-process.

    python -m bench.server_bench [--requests N] [--concurrency 1,8,64] [--replicas R] [--keep-server]
                                 [--env NAME=VALUE ...] [--workloads metrics,healthz,word_count,shell,add]
                                 [--max-seconds S] [--haproxy] [--serve-only] [--no-sandbox-ref]

Starts its own `toolserver up` (temporary TOOLSERVER_HOME, one warm sandbox, a free port on 127.0.0.1) and
stops it at the end, also on errors, Ctrl-C and SIGTERM. Three layers are measured with the same workloads:
"serve" (HTTP to the real server), "asgi" (the same FastAPI app in this process over httpx.ASGITransport,
real SQLite registry, fake sandbox backend, no Ray) and "func" (the tool's function or the sandbox called
directly), so the difference between layers is what each one costs. Progress goes to standard error; the
tables go to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._common import interrupt as _interrupt
from bench._common import interrupted as _interrupted
from bench._common import machine_summary as _machine
from bench._common import processes as _processes
from bench._common import stop_server as _stop_server
from bench._common import sweep_instance
from bench._stats import format_ms as _ms
from bench._stats import percentiles, print_table
from toolserver.serve.ingress import haproxy_binary, haproxy_env

TARGET_OVERHEAD_MS = 3.0
TARGET_RPS = 1000.0
WORD_COUNT_PATH = "toolserver.examples.deployment_tools:word_count"
ADD_SOURCE = 'def add(a: int, b: int) -> int:\n    """Add two integers."""\n    return a + b\n'
TEXT = "the quick brown fox jumps over the lazy dog"
WORKLOADS = ("metrics", "healthz", "word_count", "shell", "add")
SANDBOXED = ("shell", "add")  # one session's shell and kernel run one call at a time: fewer requests


References = dict[tuple[str, str], tuple[str, float]]  # (layer, workload) -> (what, its p50 in ms)


@dataclass(frozen=True)
class Workload:
    """One HTTP request shape; a body with a `session_id` key gets the run's session filled in."""

    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None

    def request(self, session_id: str) -> tuple[str, str, dict[str, Any] | None]:
        body = self.body
        if body is not None and "session_id" in body:
            body = {**body, "session_id": session_id}
        return self.method, self.path, body


WORKLOAD_SPECS = {
    "metrics": Workload("metrics", "GET", "/metrics"),
    "healthz": Workload("healthz", "GET", "/healthz"),
    "word_count": Workload("word_count", "POST", "/v1/tools/word_count/call", {"arguments": {"text": TEXT}}),
    "shell": Workload(
        "shell", "POST", "/v1/tools/shell/call", {"arguments": {"command": "true"}, "session_id": ""}
    ),
    "add": Workload("add", "POST", "/v1/tools/add/call", {"arguments": {"a": 2, "b": 3}, "session_id": ""}),
}


@dataclass
class Sample:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    server_cpu_s: float | None = None
    bench_cpu_s: float | None = None
    other_cores: float | None = None

    @property
    def n(self) -> int:
        return len(self.latencies_ms)


@dataclass
class Row:
    layer: str
    workload: str
    concurrency: int | None
    sample: Sample
    reference: str = ""
    reference_p50: float | None = None
    target: str = ""
    verdict: str = ""
    clients: int = 1

    def stats(self) -> dict[str, float]:
        stats = percentiles(self.sample.latencies_ms)
        stats["p99"] = _quantile(sorted(self.sample.latencies_ms), 0.99)
        return stats

    def overhead(self) -> float | None:
        if self.reference_p50 is None:
            return None
        return self.stats()["p50"] - self.reference_p50

    def cells(self) -> list[str]:
        s, sample = self.stats(), self.sample
        rps = sample.n / sample.elapsed_s if sample.elapsed_s else 0.0
        cpu = f"{sample.server_cpu_s * 1000 / sample.n:.2f}" if sample.server_cpu_s is not None else ""
        own = f"{sample.bench_cpu_s * 1000 / sample.n:.2f}" if sample.bench_cpu_s is not None else ""
        other = f"{sample.other_cores:.2f}" if sample.other_cores is not None else ""
        overhead = self.overhead()
        return [
            self.layer,
            self.workload,
            "" if self.concurrency is None else str(self.concurrency),
            str(self.clients) if self.concurrency is not None else "",
            str(sample.n),
            str(sample.errors),
            f"{rps:,.0f}",
            _ms(s["p50"]),
            _ms(s["p95"]),
            _ms(s["p99"]),
            self.reference,
            "" if overhead is None else _ms(overhead),
            cpu,
            own,
            other,
            self.target,
            self.verdict,
        ]


COLUMNS = [
    "layer", "workload", "c", "procs", "n", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "reference",
    "overhead p50", "server CPU ms/req", "bench CPU ms/req", "other cores busy", "target", "verdict",
]  # fmt: skip


def _quantile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _log(message: str) -> None:
    print(f"[server_bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- CPU accounting: which processes spent the machine's time during a measurement -------------------------


def _cpu_ticks_by_session() -> dict[int, int]:
    ticks: dict[int, int] = {}
    for _, sid, used in _processes():
        ticks[sid] = ticks.get(sid, 0) + used
    return ticks


def _machine_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]  # all, idle + iowait


class CpuMeter:
    """CPU seconds of the server's process session, and cores kept busy by everything else."""

    def __init__(self, server_sid: int | None) -> None:
        self.server_sid = server_sid
        self.hz = os.sysconf("SC_CLK_TCK")

    def snapshot(self) -> tuple[float, int, int, float]:
        server = _cpu_ticks_by_session().get(self.server_sid, 0) if self.server_sid else 0
        total, idle = _machine_ticks()
        return time.monotonic(), server, total - idle, time.process_time()

    def fill(self, sample: Sample, before: tuple[float, int, int, float]) -> None:
        after = self.snapshot()
        wall = after[0] - before[0]
        server_s = (after[1] - before[1]) / self.hz
        busy_s = (after[2] - before[2]) / self.hz
        own_s = after[3] - before[3]
        if self.server_sid:
            sample.server_cpu_s = server_s
        sample.bench_cpu_s = own_s
        if wall > 0:
            sample.other_cores = max(0.0, (busy_s - server_s - own_s) / wall)


# -- the load generator ------------------------------------------------------------------------------------


async def drive(
    send: Callable[[], Awaitable[int]], requests: int, concurrency: int, max_s: float, meter: CpuMeter
) -> Sample:
    """`requests` calls from `concurrency` workers (or fewer when `max_s` runs out); non-2xx are errors."""
    sample = Sample()
    issued = 0
    deadline = time.monotonic() + max_s

    async def worker() -> None:
        nonlocal issued
        while issued < requests and time.monotonic() < deadline:
            issued += 1
            started = time.perf_counter()
            try:
                status = await send()
            except Exception as exc:
                status, detail = 0, f"{type(exc).__name__}: {exc}"
            else:
                detail = f"HTTP {status}"
            sample.latencies_ms.append((time.perf_counter() - started) * 1000)
            if not 200 <= status < 300:
                sample.errors += 1
                if len(sample.error_examples) < 3:
                    sample.error_examples.append(detail[:200])

    before = meter.snapshot()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    sample.elapsed_s = time.perf_counter() - started
    meter.fill(sample, before)
    return sample


def _requests_at(total: int, concurrency: int, top: int, workload: str) -> int:
    """Full count at the top level, fewer below (sqrt scaling); a quarter for one-session sandbox calls."""
    count = max(50, round(total * (concurrency / top) ** 0.5))
    return max(25, count // 4) if workload in SANDBOXED else count


async def run_levels(
    layer: str,
    client: httpx.AsyncClient,
    workloads: list[str],
    session_id: str,
    args: argparse.Namespace,
    meter: CpuMeter,
    rows: list[Row],
) -> None:
    for name in workloads:
        request = WORKLOAD_SPECS[name].request(session_id)
        send = _sender(client, *request)
        for concurrency in args.concurrency:
            count = _requests_at(args.requests, concurrency, max(args.concurrency), name)
            processes = -(-concurrency // args.per_client) if layer == "serve" else 1
            if processes > 1:
                sample = await drive_processes(client, request, count, concurrency, processes, args, meter)
            else:
                await drive(send, max(2 * concurrency, 20), concurrency, 30.0, CpuMeter(None))  # warm-up
                sample = await drive(send, count, concurrency, args.max_seconds, meter)
            rows.append(Row(layer, name, concurrency, sample, clients=processes))
            rps = sample.n / sample.elapsed_s
            _log(f"{layer} {name} c={concurrency}: {sample.n} in {sample.elapsed_s:.1f} s ({rps:.0f}/s)")


def _sender(client: httpx.AsyncClient, method: str, path: str, body: Any) -> Callable[[], Awaitable[int]]:
    async def send() -> int:
        return (await client.request(method, path, json=body)).status_code

    return send


# -- several load-generator processes: one httpx pool of 64 connections costs ~4x the CPU per request of a
# pool of 16 (httpcore's pool does work per connection on every request), so high concurrency is split.


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _client_process(
    url: str, headers: dict[str, str], request: tuple[str, str, Any], count: int, concurrency: int,
    max_s: float, ready: Any, go: Any, results: Any,
) -> None:  # fmt: skip
    """One load generator: its own AsyncClient, warmed up, then measuring once the parent says go."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us

    async def run() -> tuple[float, Sample]:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
            send = _sender(client, *request)
            await drive(send, max(2 * concurrency, 20), concurrency, 30.0, CpuMeter(None))
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            started = time.time()
            return started, await drive(send, count, concurrency, max_s, CpuMeter(None))

    started, sample = asyncio.run(run())
    results.put((started, started + sample.elapsed_s, sample.latencies_ms, sample.errors,
                 sample.error_examples, sample.bench_cpu_s))  # fmt: skip


async def _gather_queue(queue: Any, count: int, processes: list[Any], timeout_s: float) -> list[Any]:
    items: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(items) < count:
        try:
            items.append(queue.get_nowait())
            continue
        except Exception:  # queue.Empty
            pass
        if any(p.exitcode not in (None, 0) for p in processes) or time.monotonic() > deadline:
            raise RuntimeError(f"a load-generator process failed or hung ({[p.exitcode for p in processes]})")
        await asyncio.sleep(0.02)
    return items


async def drive_processes(
    client: httpx.AsyncClient,
    request: tuple[str, str, Any],
    count: int,
    concurrency: int,
    processes: int,
    args: argparse.Namespace,
    meter: CpuMeter,
) -> Sample:
    """`concurrency` split over `processes` client processes that start measuring together."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    headers = {"Authorization": client.headers["authorization"]}
    procs = [
        ctx.Process(
            target=_client_process,
            args=(str(client.base_url), headers, request, n, c, args.max_seconds, ready, go, results),
            daemon=True,
        )
        for n, c in zip(_split(count, processes), _split(concurrency, processes), strict=True)
    ]
    sample: Sample | None = None
    try:
        for proc in procs:
            proc.start()
        await _gather_queue(ready, len(procs), procs, 120)
        before = meter.snapshot()
        go.set()
        parts = await _gather_queue(results, len(procs), procs, args.max_seconds + 180)
        sample = Sample()
        for _, _, latencies, errors, examples, _ in parts:
            sample.latencies_ms.extend(latencies)
            sample.errors += errors
            sample.error_examples.extend(examples[: 3 - len(sample.error_examples)])
        sample.elapsed_s = max(p[1] for p in parts) - min(p[0] for p in parts)
        wall = time.monotonic() - before[0]
        meter.fill(sample, before)
        clients_cpu = sum(p[5] or 0.0 for p in parts)
        sample.bench_cpu_s = clients_cpu
        if sample.other_cores is not None:  # the clients are ours, not "other" load
            sample.other_cores = max(0.0, sample.other_cores - clients_cpu / wall)
        return sample
    finally:  # after the results the clients exit by themselves; on an error or Ctrl-C they are killed
        for proc in procs:
            if proc.is_alive() and sample is None:
                proc.kill()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


# -- in-process references: the functions, the service layer, the FastAPI app without Ray ----------------


def _time_sync(fn: Callable[[], Any], n: int) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        sample.latencies_ms.append((time.perf_counter() - t) * 1000)
    sample.elapsed_s = time.perf_counter() - started
    return sample


async def _time_async(fn: Callable[[], Awaitable[Any]], n: int) -> Sample:
    for _ in range(min(n, 20)):
        await fn()
    sample = Sample()
    started = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        sample.latencies_ms.append((time.perf_counter() - t) * 1000)
    sample.elapsed_s = time.perf_counter() - started
    return sample


def _plain_add(a: int, b: int) -> int:
    namespace: dict[str, Any] = {}
    exec(compile(ADD_SOURCE, "<add>", "exec"), namespace)
    return int(namespace["add"](a, b))


def _direct_runner() -> Any:
    """A runner for deployment tools without Ray Serve: the function at `import_path`, called in-process."""
    import importlib

    from toolserver.tools.deployment import DeploymentToolRunner

    class DirectRunner(DeploymentToolRunner):
        async def deploy(self, spec: Any) -> None:
            return None

        async def remove(self, spec: Any) -> None:
            return None

        async def run(self, tool: Any, arguments: dict[str, Any], context: Any) -> Any:
            module, _, attribute = tool.config["import_path"].partition(":")
            return getattr(importlib.import_module(module), attribute)(**arguments)

    return DirectRunner()


def _fake_shell(command: str) -> Any:
    from sandbox.base import ShellResult

    return ShellResult(exit_code=0, output="", timed_out=False, truncated=False, cwd="/workspace")


def _fake_python(code: str) -> Any:
    """The fake 'kernel': executes the tool's invocation cell in this process."""
    from sandbox.base import PythonResult

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<cell>", "exec"), {"__name__": "__main__"})
    return PythonResult(status="ok", stdout=out.getvalue())


def _fake_sandbox(info: Any) -> Any:
    from sandbox.fake import FakeSandbox

    return FakeSandbox(info, shell=_fake_shell, python=_fake_python)


def _add_cell() -> str:
    from toolserver.tools.python import build_invocation, new_marker

    return build_invocation(ADD_SOURCE, "add", {"a": 2, "b": 3}, marker=new_marker())


async def bench_in_process(
    args: argparse.Namespace, workloads: list[str], rows: list[Row], parts: list[Row]
) -> References:
    """The 'func' and 'asgi' layers, and the parts of one tool call; returns reference p50s by workload."""
    from foundation.schema.validation import validate_arguments
    from registry import Database, KeyStore
    from sandbox.config import SandboxConfig
    from sandbox.fake import FakeBackend
    from sandbox.manager import SandboxManager
    from toolserver.config import Settings
    from toolserver.examples.deployment_tools import word_count
    from toolserver.http.app import build_services, create_app
    from toolserver.nodes.local import LocalNodes

    references: References = {}
    wc = Row("func", "word_count() plain call", None, _time_sync(lambda: word_count(TEXT), 20000))
    add = Row("func", "add() plain call (exec'd source)", None, _time_sync(lambda: _plain_add(2, 3), 5000))
    cell = _add_cell()
    fake_shell = Row(
        "func",
        "fake sandbox shell (asgi layer's sandbox)",
        None,
        _time_sync(lambda: _fake_shell("true"), 5000),
    )
    fake_kernel = Row(
        "func",
        "fake kernel execs add's cell (asgi layer's)",
        None,
        _time_sync(lambda: _fake_python(cell), 2000),
    )
    rows.extend([wc, add, fake_shell, fake_kernel])
    references[("asgi", "word_count")] = references[("serve", "word_count")] = (
        "word_count()",
        wc.stats()["p50"],
    )
    references[("asgi", "shell")] = ("fake shell", fake_shell.stats()["p50"])
    references[("asgi", "add")] = ("fake kernel", fake_kernel.stats()["p50"])
    if args.serve_only:
        return references

    home = Path(tempfile.mkdtemp(prefix="tsbench-app-"))
    settings = Settings(home=home, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(
        SandboxConfig(pool_size=0, node_id="bench"),
        backend=FakeBackend("bench", sandbox_factory=_fake_sandbox),
    )
    try:
        services = build_services(
            settings, db, LocalNodes({"bench": manager}), {"deployment": _direct_runner()}
        )
        _, secret = KeyStore(db).create("bench", "admin", admin=True)
        header = f"Bearer {secret}"
        transport = httpx.ASGITransport(app=create_app(services))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://asgi", headers={"Authorization": header}, timeout=60
        ) as client:
            session_id = await _prepare_tools(client)
            who = services.auth.principal(header)
            parts_spec: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
                ("auth: cached key (every request)", _awaitable(lambda: services.auth.cached(header))),
                ("auth: key lookup in SQLite (cache miss, every 5 s)", _awaitable(lambda: services.keys.verify(secret))),
                ("service: tool record read (SQLite)", _awaitable(lambda: services.tools.tools.get("bench", "word_count"))),
                ("service: validate arguments", _awaitable(lambda: validate_arguments(_WC_SCHEMA, {"text": TEXT}))),
                ("service: audit row write (SQLite, one commit)", _awaitable(lambda: services.audit.record("bench", "word_count", "ok"))),
                ("service: session read + touch (sandboxed tools)", lambda: _session_read_touch(services, session_id)),
                ("asyncio.to_thread hop (no work)", lambda: asyncio.to_thread(int)),
                ("ToolService.call(word_count), no HTTP", lambda: services.tools.call(who, "word_count", {"text": TEXT}, None)),
                ("ToolService.call(add), fake kernel, no HTTP", lambda: services.tools.call(who, "add", {"a": 2, "b": 3}, session_id)),
            ]  # fmt: skip
            for label, fn in parts_spec:
                parts.append(Row("parts", label, 1, await _time_async(fn, 300)))
            await run_levels("asgi", client, workloads, session_id, args, CpuMeter(None), rows)
    finally:
        await manager.shutdown()
        db.close()
        shutil.rmtree(home, ignore_errors=True)
    return references


_WC_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "the text"}},
    "required": ["text"],
    "additionalProperties": False,
}


def _awaitable(fn: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    async def call() -> Any:
        return fn()

    return call


async def _session_read_touch(services: Any, session_id: str) -> None:
    store = services.sessions.store
    await asyncio.to_thread(store.get, "bench", session_id)
    await asyncio.to_thread(store.touch, "bench", session_id)


async def _prepare_tools(client: httpx.AsyncClient) -> str:
    """Register word_count (deployment) and add (python), open one session; returns its id."""
    word_count = {
        "name": "word_count",
        "kind": "deployment",
        "import_path": WORD_COUNT_PATH,
        "description": "Count words and characters of a text.",
        "parameters": _WC_SCHEMA,
    }
    for body in (word_count, {"name": "add", "kind": "python", "source": ADD_SOURCE}):
        response = await client.post("/v1/tools", json=body, timeout=180)
        if response.status_code != 201:
            raise RuntimeError(f"registering {body['name']}: {response.status_code} {response.text[:300]}")
    response = await client.post("/v1/sessions", json={}, timeout=120)
    if response.status_code != 201:
        raise RuntimeError(f"creating a session: {response.status_code} {response.text[:300]}")
    return str(response.json()["id"])


async def bench_sandbox_direct(references: References, rows: list[Row]) -> None:
    """The shell and kernel of a real sandbox called in-process: what a sandboxed tool costs with no server."""
    from sandbox.base import SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.docker import DockerBackend

    config = SandboxConfig(pool_size=0, instance_id=BENCH_INSTANCE, node_id="bench")
    backend = DockerBackend(config)
    sandbox = await backend.create(SandboxSpec())
    try:
        code = _add_cell()
        shell = Row(
            "func",
            "sandbox shell('true'), no server",
            None,
            await _time_async(lambda: sandbox.shell("true"), 200),
        )
        kernel = Row("func", "sandbox kernel runs add's cell, no server", None, await _time_async(lambda: sandbox.python(code), 200))  # fmt: skip
        rows.extend([shell, kernel])
        references[("serve", "shell")] = ("sandbox shell", shell.stats()["p50"])
        references[("serve", "add")] = ("sandbox kernel", kernel.stats()["p50"])
    finally:
        await backend.destroy(sandbox.info.session_id)
        await backend.close()


BENCH_INSTANCE = f"bench-server-{os.getpid()}"


# -- the real server ---------------------------------------------------------------------------------------


async def bench_server(server: Any, args: argparse.Namespace, workloads: list[str], rows: list[Row]) -> None:
    limits = httpx.Limits(
        max_connections=max(args.concurrency), max_keepalive_connections=max(args.concurrency)
    )
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_key}"},
        limits=limits,
        timeout=120,
    ) as client:
        session_id = await _prepare_tools(client)
        meter = CpuMeter(os.getsid(server.proc.pid))
        await run_levels("serve", client, workloads, session_id, args, meter, rows)


def _verdicts(rows: list[Row], references: References, top: int) -> None:
    for row in rows:
        if (row.layer, row.workload) not in references:
            continue
        row.reference, row.reference_p50 = references[(row.layer, row.workload)]
        overhead = row.overhead()
        if row.layer == "serve" and row.concurrency == 1 and overhead is not None:
            row.target = f"overhead p50 <= {TARGET_OVERHEAD_MS:g} ms"
            row.verdict = "met" if overhead <= TARGET_OVERHEAD_MS else "not met"
    for row in rows:
        if row.layer == "serve" and row.workload == "word_count" and row.concurrency == top:
            rps = row.sample.n / row.sample.elapsed_s
            row.target = f">= {TARGET_RPS:,.0f}/s, 0 errors"
            row.verdict = "met" if rps >= TARGET_RPS and row.sample.errors == 0 else "not met"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.server_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests at the top concurrency level")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated concurrency levels")
    parser.add_argument("--replicas", type=int, default=1, help="ingress replicas (TOOLSERVER_REPLICAS)")
    parser.add_argument(
        "--per-client", type=int, default=16, help="connections per load-generator process (serve layer)"
    )
    parser.add_argument("--max-seconds", type=float, default=12.0, help="time cap of one measurement")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="server env (repeat)"
    )
    parser.add_argument(
        "--haproxy", action="store_true", help="Ray's throughput mode: HAProxy ingress + direct ingress"
    )
    parser.add_argument("--serve-only", action="store_true", help="skip the asgi layer and the parts table")
    parser.add_argument("--no-sandbox-ref", action="store_true", help="skip the direct sandbox reference")
    parser.add_argument("--keep-server", action="store_true", help="leave the server running at the end")
    args = parser.parse_args(argv)
    try:
        args.concurrency = sorted({int(c) for c in args.concurrency.split(",")})
    except ValueError:
        parser.error("--concurrency must look like 1,8,64")
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown or min(args.concurrency) < 1 or args.requests < 1 or args.replicas < 1:
        parser.error(f"unknown workloads {sorted(unknown)} or a count below 1")
    if any("=" not in kv for kv in args.env):
        parser.error("--env takes NAME=VALUE")
    if args.haproxy and haproxy_binary() is None:
        parser.error("--haproxy needs the haproxy binary (Debian: apt-get install haproxy)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    from tests.integration.serverproc import ServerProcess

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = _machine()
    started = time.perf_counter()
    env = {"TOOLSERVER_POOL_SIZE": "1", "TOOLSERVER_REPLICAS": str(args.replicas)}
    home = Path(tempfile.mkdtemp(prefix="tsbench-server-"))
    # HAProxy caps its admin socket path at 97 bytes and Ray nests it two levels down: a short directory.
    haproxy_dir = Path(tempfile.mkdtemp(prefix="tsh-")) if args.haproxy else None
    if haproxy_dir is not None:
        env.update(haproxy_env(haproxy_dir))
    env.update(kv.split("=", 1) for kv in args.env)
    server = ServerProcess(home, env=env)
    rows: list[Row] = []
    parts: list[Row] = []
    references: References = {}
    notes: list[str] = []
    status = 0
    try:
        _log(
            "in-process: plain functions" + ("" if args.serve_only else ", service parts, FastAPI app alone")
        )
        references = asyncio.run(bench_in_process(args, args.workloads, rows, parts))
        if not args.no_sandbox_ref and set(SANDBOXED) & set(args.workloads):
            _log("in-process: a real sandbox's shell and kernel, no server")
            asyncio.run(bench_sandbox_direct(references, rows))
        _log(
            f"starting toolserver up on 127.0.0.1:{server.port} ({' '.join(f'{k}={v}' for k, v in env.items())})"
        )
        t = time.perf_counter()
        server.start()
        notes.append(f"server started in {time.perf_counter() - t:.0f} s; home {home}")
        asyncio.run(bench_server(server, args, args.workloads, rows))
    except KeyboardInterrupt:
        _log("interrupted: stopping the server, then printing what was measured")
        notes.append("INTERRUPTED: the table is partial.")
        status = 130
    except Exception as exc:
        _log(f"failed: {type(exc).__name__}: {exc}")
        notes.append(f"FAILED: {type(exc).__name__}: {str(exc)[:500]}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        sweep_instance(BENCH_INSTANCE)
        if args.keep_server and not _interrupted and server.proc is not None:
            notes.append(
                f"server kept: {server.url}, pid {server.proc.pid}; stop: TOOLSERVER_HOME={home} toolserver down"
            )
        else:
            t = time.perf_counter()
            _stop_server(server)
            notes.append(f"server stopped in {time.perf_counter() - t:.0f} s")
            shutil.rmtree(home, ignore_errors=True)
            if haproxy_dir is not None:
                shutil.rmtree(haproxy_dir, ignore_errors=True)
    _verdicts(rows, references, max(args.concurrency))
    print(f"Tool-server benchmark, {when}")
    print(machine)
    print(f"server env: {' '.join(f'{k}={v}' for k, v in env.items())}")
    print()
    print_table("Throughput and latency by layer (latencies in ms)", COLUMNS, [r.cells() for r in rows])
    print()
    part_columns = ["part of one call", "n", "p50 ms", "p95 ms", "p99 ms"]
    part_rows = [
        [r.workload, str(r.sample.n), *(_ms(r.stats()[k]) for k in ("p50", "p95", "p99"))] for r in parts
    ]
    if part_rows:
        print_table("Parts of one tool call, in-process, one at a time", part_columns, part_rows)
        print()
    print("Notes:")
    for row in rows:
        if row.sample.error_examples:
            notes.append(
                f"{row.layer} {row.workload} c={row.concurrency} errors: {row.sample.error_examples}"
            )
    for note in notes:
        print(f"- {note}")
    print(
        f"- total run time {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
