"""Sandbox benchmark: our Docker backend next to autogen-ext's and llm-sandbox's Docker executors.

    python -m bench.sandbox_bench [--iterations N] [--calls N] [--sessions-capacity M] [--skip-peers]
                                  [--runtime runc|runsc|both] [--idle-sessions K]

`--runtime both` measures our backend under runc and under runsc (gVisor) in the same run, one table.

Everything runs on the local Docker engine, with the same image for every system. Every container
the run starts carries the run's id (our label `toolserver.instance=bench-<id>`, peer names
`tsbench-<id>-...`) and is removed at the end, also on errors, Ctrl-C and SIGTERM.
Progress goes to standard error; the results go to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import importlib.metadata
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench._stats import percentiles, print_table
from sandbox.base import Runtime

RUN_ID = uuid.uuid4().hex[:8]
INSTANCE = f"bench-{RUN_ID}"  # our backend's instance label: this run's containers and nothing else
PEER_PREFIX = f"tsbench-{RUN_ID}-"  # the peers' container names
PEER_TMP = os.path.join(tempfile.gettempdir(), f"tsbench-{RUN_ID}")  # the peers' host work dirs
BENCH_LABELS = {"toolserver.bench": RUN_ID}
GIB, MIB = 1024**3, 1024**2

TARGETS = {  # from the issue; judged on p50
    "cold": ("p50 <= 1500 ms", 1500.0),
    "warm": ("p50 <= 20 ms", 20.0),
    "shell": ("p50 <= 15 ms", 15.0),
    "python": ("p50 <= 8 ms", 8.0),
}
CAPACITY_SESSIONS, CAPACITY_BYTES = 100, 24 * GIB
FIRST = "cold start -> first `1+1` result"


class WrongResult(Exception):
    """A call answered, but not with what `true` / `1+1` must give."""


@dataclass
class Series:
    """Latencies (ms) of one measurement, and the calls whose result was wrong (not timed)."""

    ms: list[float] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


@dataclass
class Row:
    system: str
    measurement: str
    stats: dict[str, float] | None = None
    target: str = ""
    verdict: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        s = self.stats
        numbers = [_num(s["p50"]), _num(s["p95"]), _num(s["mean"]), str(int(s["n"]))] if s else ["-"] * 4
        return [self.system, self.measurement, *numbers, self.target, self.verdict, self.note]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, system: str, measurement: str, series: Series, target: str = "", note: str = "") -> None:
        """One row for `series`, judged against TARGETS[target] when given."""
        if series.wrong:
            first = " ".join(series.wrong[0].split())[:100]
            note = f"{note}; " if note else ""
            note += f"{len(series.wrong)} wrong results not timed, first: {first}"
        if not series.ms:
            self.rows.append(Row(system, measurement, note=note or "no sample"))
            return
        stats = percentiles(series.ms)
        row = Row(system, measurement, stats, note=note)
        if target:
            row.target, limit = TARGETS[target]
            row.verdict = "met" if stats["p50"] <= limit and not series.wrong else "NOT met"
        self.rows.append(row)

    def failed(self, system: str, what: str, exc: BaseException) -> None:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        _log(f"{system}: {what} failed: {message}")
        self.rows.append(Row(system, what, note=f"did not run: {message[:160]}"))


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _check(ok: bool, what: str, result: Any) -> None:
    if not ok:
        raise WrongResult(f"{what} returned {result!r}")


async def _timed(series: Series, call: Callable[[], Awaitable[Any]], t0: float | None = None) -> None:
    """Time one call (from `t0` when given) into `series`; a wrong result is counted instead."""
    t0 = time.perf_counter() if t0 is None else t0
    try:
        await call()
    except WrongResult as exc:
        series.wrong.append(str(exc))
        return
    series.ms.append(_ms_since(t0))


async def _round_trips(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 3) -> Series:
    for _ in range(warmup):
        await _timed(Series(), call)
    series = Series()
    for _ in range(n):
        await _timed(series, call)
    return series


def _sync(call: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A blocking peer call as a coroutine run inline: the timing stays in this thread."""

    async def run() -> Any:
        return call()

    return run


# --- ours ------------------------------------------------------------------------------------


def _ours(runtime: str) -> str:
    return f"ours/{runtime}"


async def bench_ours(args: argparse.Namespace, report: Report, runtime: Runtime = "runc") -> None:
    from sandbox.base import SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.docker import DockerBackend
    from sandbox.manager import SandboxManager

    ours = _ours(runtime)
    config = SandboxConfig(
        image=args.image, pool_size=2, instance_id=INSTANCE, node_id=f"bench-{runtime}", runtime=runtime
    )
    report.notes.append(
        f"{ours}: hardened container (uid 1000, cap-drop ALL, read-only root, network none, 1 GiB/1 cpu/256"
        f" pids) under {runtime}, with a persistent bash and an IPython kernel reached over unix sockets. Cold ="
        " DockerBackend.create; warm = SandboxManager.create from a full pool of 2; round trips go through"
        " SandboxManager."
    )

    _log(f"{ours}: {args.iterations} cold creates (DockerBackend.create, container start to kernel ready)")
    backend = DockerBackend(config)
    cold, first = Series(), Series()
    try:
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            sandbox = await backend.create(SandboxSpec())
            cold.ms.append(_ms_since(t0))

            async def add(sandbox: Any = sandbox) -> None:
                result = await sandbox.python("1+1")
                _check(result.result == "2", "python `1+1`", result)

            await _timed(first, add, t0)
            await backend.destroy(sandbox.info.session_id)
    except Exception as exc:
        report.failed(ours, "cold create", exc)
    finally:
        await backend.close()
    report.add(ours, "cold create -> kernel ready", cold, "cold")
    report.add(ours, FIRST, first)

    manager = SandboxManager(config)
    try:
        await manager.start()
        _log(f"{ours}: {args.iterations} warm acquires (SandboxManager.create from a pool of 2)")
        warm = Series()
        for _ in range(args.iterations):
            await manager.pool.wait_full(120)
            t0 = time.perf_counter()
            info = await manager.create(SandboxSpec())
            warm.ms.append(_ms_since(t0))
            await manager.destroy(info.session_id)
        report.add(ours, "warm acquire (pool hand-out)", warm, "warm", "pool_size=2")

        await manager.pool.wait_full(120)
        sid = (await manager.create(SandboxSpec())).session_id
        await manager.pool.wait_full(120)  # the refill must not compete with the round trips
        _log(f"{ours}: {args.calls} shell and {args.calls} python round trips on one session")

        async def shell_true() -> None:
            result = await manager.shell(sid, "true")
            _check(result.exit_code == 0, "shell `true`", result)

        async def python_add() -> None:
            result = await manager.python(sid, "1+1")
            _check(result.status == "ok" and result.result == "2", "python `1+1`", result)

        report.add(ours, "shell `true` round trip", await _round_trips(shell_true, args.calls), "shell")
        report.add(ours, "python `1+1` round trip", await _round_trips(python_add, args.calls), "python")
    except Exception as exc:
        report.failed(ours, "warm acquire / round trips", exc)
    finally:
        await manager.shutdown()


# --- peers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _offline_peer_containers() -> Iterator[None]:
    """Give containers named with PEER_PREFIX `network_mode=none` and the run's label.

    autogen's executor has no network option, so its containers would join the default bridge;
    this wraps docker-py's create for the peers' containers only, for the duration of the block.
    """
    from docker.models.containers import ContainerCollection

    original = ContainerCollection.create

    def create(self: Any, image: Any, command: Any = None, **kwargs: Any) -> Any:
        if str(kwargs.get("name", "")).startswith(PEER_PREFIX):
            kwargs["network_mode"] = "none"
            kwargs["labels"] = {**(kwargs.get("labels") or {}), **BENCH_LABELS}
        return original(self, image, command, **kwargs)

    ContainerCollection.create = create  # type: ignore[method-assign]
    try:
        yield
    finally:
        ContainerCollection.create = original  # type: ignore[method-assign]


def _remove_container(name: str) -> None:
    import docker
    import docker.errors

    with contextlib.suppress(docker.errors.NotFound):
        docker.from_env().containers.get(name).remove(force=True)


async def bench_autogen(args: argparse.Namespace, report: Report) -> None:
    system = f"autogen-ext {_version('autogen-ext')}"
    report.notes.append(
        f"{system}: DockerCommandLineCodeExecutor(image={args.image}, work_dir=<host dir>, auto_remove=True)"
        " runs as the image's user (uid 1000) with its own entrypoint /bin/sh and a tty; image already local, so"
        " no pull. It has no network option: network_mode=none is injected by wrapping docker-py's create."
        " Each block: code file written on the host, then docker exec `timeout 60 sh|python FILE` (a new"
        " process). Its start() polls the container status every 100 ms."
    )
    try:
        from autogen_core import CancellationToken
        from autogen_core.code_executor import CodeBlock
        from autogen_ext.code_executors.docker import DockerCommandLineCodeExecutor
    except Exception as exc:
        report.failed(system, "DockerCommandLineCodeExecutor", exc)
        return

    def block(executor: Any, code: str, lang: str, expect: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            result = await executor.execute_code_blocks([CodeBlock(code, lang)], CancellationToken())
            _check(result.exit_code == 0 and result.output.strip() == expect, f"{lang} {code!r}", result)

        return run

    _log(f"autogen: {args.iterations} executor starts, {args.calls} sh and python round trips")
    cold, first, sh, py = Series(), Series(), Series(), Series()
    try:
        with _offline_peer_containers():
            for i in range(args.iterations):
                name = f"{PEER_PREFIX}autogen-{i}"
                work_dir = os.path.join(PEER_TMP, f"autogen-{i}")
                os.makedirs(work_dir, mode=0o755)  # the image's user reads the code files
                executor = DockerCommandLineCodeExecutor(
                    image=args.image, container_name=name, work_dir=work_dir, timeout=60, auto_remove=True
                )
                try:
                    t0 = time.perf_counter()
                    await executor.start()
                    cold.ms.append(_ms_since(t0))
                    await _timed(first, block(executor, "print(1+1)", "python", "2"), t0)
                    if i == 0:
                        sh = await _round_trips(block(executor, "true", "sh", ""), args.calls)
                        py = await _round_trips(block(executor, "print(1+1)", "python", "2"), args.calls)
                finally:
                    # Its stop() would wait 10 s for the tty shell to ignore SIGTERM: remove it outright.
                    await asyncio.to_thread(_remove_container, name)
                    await executor.stop()
    except Exception as exc:
        report.failed(system, "DockerCommandLineCodeExecutor", exc)
    report.add(system, "executor start (cold)", cold, note="to container running")
    report.add(system, FIRST, first)
    report.add(system, "sh block `true` round trip", sh)
    report.add(system, "python block `print(1+1)` round trip", py)


async def bench_llm_sandbox(args: argparse.Namespace, report: Report) -> None:
    system = f"llm-sandbox {_version('llm-sandbox')}"
    report.notes.append(
        f"{system}: SandboxSession(lang='python', image={args.image}, keep_template=True,"
        " skip_environment_setup=True, runtime_configs={network_mode: none, entrypoint: /bin/sh}) as root (its"
        " default) with its tty. Its default setup (venv + `pip install --upgrade pip`) needs a network, so it"
        " is skipped. run(): docker exec mkdir + put_archive of the code file, then docker exec python FILE."
        " Its API is synchronous; it is called inline, from the benchmark's one thread."
    )
    try:
        from llm_sandbox import SandboxSession
    except Exception as exc:
        report.failed(system, "SandboxSession (docker)", exc)
        return

    def run_py(session: Any) -> Callable[[], Awaitable[None]]:
        def call() -> None:
            result = session.run("print(1+1)")
            _check(result.exit_code == 0 and result.stdout.strip() == "2", "run('print(1+1)')", result)

        return _sync(call)

    def run_true(session: Any) -> Callable[[], Awaitable[None]]:
        def call() -> None:
            result = session.execute_command("true")
            _check(result.exit_code == 0, "execute_command('true')", result)

        return _sync(call)

    _log(f"llm-sandbox: {args.iterations} session opens, {args.calls} run() and execute_command() calls")
    cold, first, py, sh = Series(), Series(), Series(), Series()
    try:
        for i in range(args.iterations):
            name = f"{PEER_PREFIX}llmsbx-{i}"
            session = None
            try:
                t0 = time.perf_counter()
                session = SandboxSession(
                    lang="python",
                    image=args.image,
                    keep_template=True,
                    skip_environment_setup=True,
                    default_timeout=60,
                    runtime_configs={
                        "name": name,
                        "labels": dict(BENCH_LABELS),
                        "network_mode": "none",
                        "entrypoint": ["/bin/sh"],
                    },
                )
                session.open()
                cold.ms.append(_ms_since(t0))
                await _timed(first, run_py(session), t0)
                if i == 0:
                    py = await _round_trips(run_py(session), args.calls)
                    sh = await _round_trips(run_true(session), args.calls)
            finally:
                await asyncio.to_thread(_remove_container, name)
                if session is not None:
                    with contextlib.suppress(Exception):
                        session.close()
    except Exception as exc:
        report.failed(system, "SandboxSession (docker)", exc)
    report.add(system, "session open (cold)", cold, note="to container running")
    report.add(system, FIRST, first)
    report.add(system, 'run("print(1+1)") round trip', py)
    report.add(system, 'execute_command("true") round trip', sh)


# --- capacity --------------------------------------------------------------------------------


def _meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as fh:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}


def _host_used() -> int:
    info = _meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def _parse_size(text: str) -> float:
    units = {"GiB": GIB, "MiB": MIB, "KiB": 1024, "GB": 1e9, "MB": 1e6, "kB": 1e3, "B": 1}
    text = text.strip()
    unit = next(u for u in units if text.endswith(u))
    return float(text[: -len(unit)]) * units[unit]


def _container_memory(names: list[str], ids: list[str]) -> tuple[str, list[float]]:
    """Each container's memory usage in bytes: `docker stats --no-stream`, else the cgroup v1 files."""
    if shutil.which("docker"):
        out = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", *names],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        return "docker stats --no-stream", [_parse_size(line.split("/")[0]) for line in out.splitlines()]
    usage: list[float] = []
    for cid in ids:
        base = f"/sys/fs/cgroup/memory/docker/{cid}"
        with open(f"{base}/memory.usage_in_bytes") as fh, open(f"{base}/memory.stat") as st:
            inactive = dict(line.split() for line in st).get("total_inactive_file", "0")
            usage.append(float(int(fh.read()) - int(inactive)))
    return "cgroup v1 usage - inactive_file", usage


def _shim_memory(container_ids: list[str]) -> list[float]:
    """Proportional set size (bytes) of each container's containerd-shim, which lives outside its cgroup."""
    wanted, found = set(container_ids), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().decode(errors="replace").split("\0")
            if (
                "containerd-shim" not in argv[0]
                or "-id" not in argv
                or argv[argv.index("-id") + 1] not in wanted
            ):
                continue
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                found.append(next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) * 1024.0)
        except (OSError, IndexError, StopIteration, ValueError):
            continue
    return found


async def bench_idle_memory(args: argparse.Namespace, report: Report, runtime: Runtime = "runc") -> None:
    """Memory of a few idle sessions (default limits, kernel started): the container's cgroup and its shim."""
    from sandbox.base import SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.docker import DockerBackend

    ours, count = _ours(runtime), args.idle_sessions
    backend = DockerBackend(
        SandboxConfig(
            image=args.image, pool_size=0, instance_id=INSTANCE, node_id=f"idle-{runtime}", runtime=runtime
        )
    )
    _log(f"{ours}: {count} idle sessions for their memory")
    try:
        made = [await backend.create(SandboxSpec()) for _ in range(count)]
        for sandbox in made:  # a kernel that ran a cell, as a session that was used once
            _check((await sandbox.python("1+1")).result == "2", "python `1+1`", sandbox)
        await asyncio.sleep(3.0)
        ids = [s.info.container_id for s in made]
        names = [f"tsbx-{s.info.session_id}" for s in made]
        source, usage = await asyncio.to_thread(_container_memory, names, ids)
        shims = await asyncio.to_thread(_shim_memory, ids)
        report.add(ours, "idle session memory (MiB)", Series([u / MIB for u in usage]), note=source)
        if shims:
            report.add(ours, "its containerd-shim (MiB, PSS)", Series([m / MIB for m in shims]))
    except Exception as exc:
        report.failed(ours, "idle session memory", exc)
    finally:
        await _destroy_all(backend, 4)


async def bench_capacity(args: argparse.Namespace, report: Report) -> None:
    from sandbox.base import Limits, SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.docker import DockerBackend

    count, limits = args.sessions_capacity, Limits()
    backend = DockerBackend(
        SandboxConfig(image=args.image, pool_size=0, instance_id=INSTANCE, node_id="capacity")
    )
    semaphore = asyncio.Semaphore(args.capacity_concurrency)
    created: list[Any] = []
    creates = Series()

    async def create_one() -> None:
        async with semaphore:
            t0 = time.perf_counter()
            created.append(await backend.create(SandboxSpec(limits=limits)))
            creates.ms.append(_ms_since(t0))

    _log(f"capacity: creating {count} idle sessions, {args.capacity_concurrency} at a time")
    try:
        await asyncio.sleep(2.0)
        before = _host_used()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(create_one() for _ in range(count)), return_exceptions=True)
        wall_s = time.perf_counter() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        _log(f"capacity: {len(created)} up in {wall_s:.1f} s ({len(errors)} failed); settling 5 s")
        await asyncio.sleep(5.0)
        after = _host_used()
        ids = [s.info.container_id for s in created]
        names = [f"tsbx-{s.info.session_id}" for s in created]
        source, usage = await asyncio.to_thread(_container_memory, names, ids) if created else ("", [])
        shims = await asyncio.to_thread(_shim_memory, ids)
        alive = 0
        for sandbox in created:
            with contextlib.suppress(Exception):
                alive += (await sandbox.python("1+1", timeout_s=30)).result == "2"

        label = f"capacity: {count} idle sessions"
        report.add("ours", f"{label}: create -> kernel ready", creates, note=f"all up in {wall_s:.0f} s")
        if usage:
            note = f"sum {sum(usage) / GIB:.2f} GiB ({source})"
            report.add(
                "ours", f"{label}: memory per container (MiB)", Series([u / MIB for u in usage]), note=note
            )
        if shims:
            note = f"sum {sum(shims) / GIB:.2f} GiB (PSS; outside the container cgroups)"
            report.add(
                "ours",
                f"{label}: containerd-shim per container (MiB)",
                Series([m / MIB for m in shims]),
                note=note,
            )
        delta = after - before
        used = max(delta, sum(usage) + sum(shims))
        report.rows.append(
            Row(
                "ours",
                f"{label}: host memory used (MiB)",
                {"p50": delta / MIB, "p95": delta / MIB, "mean": delta / MIB, "n": len(created)},
                f"{CAPACITY_SESSIONS} sessions on 24 GiB",
                _capacity_verdict(len(created), alive, before, used),
                f"MemTotal-MemAvailable +{delta / GIB:.2f} GiB ({delta / MIB / max(1, len(created)):.0f} MiB/session);"
                f" containers + shims {(sum(usage) + sum(shims)) / MIB / max(1, len(created)):.0f} MiB/session;"
                f" {after / GIB:.1f} of {_meminfo()['MemTotal'] / GIB:.1f} GiB in use",
            )
        )
        if errors:
            report.notes.append(f"capacity: {len(errors)} creates failed, first: {errors[0]!r}")
        report.notes.append(
            f"capacity: {len(created)} sessions from DockerBackend.create ({args.capacity_concurrency} at a time),"
            f" default limits (memory_mb={limits.memory_mb}, cpus={limits.cpus}, pids={limits.pids});"
            f" {alive}/{len(created)} answered python `1+1` after the measurement. Host memory ="
            " MemTotal-MemAvailable (/proc/meminfo) just before the first create and 5 s after the last: it"
            " includes dockerd/containerd overhead and whatever else ran meanwhile; that row has one value"
            " (shown in all three columns). The verdict takes the larger of that delta and containers + shims."
        )
    except Exception as exc:
        report.failed("ours", f"capacity: {count} idle sessions", exc)
    finally:
        t1 = time.perf_counter()
        await _destroy_all(backend, args.capacity_concurrency)
        _log(f"capacity: removed all in {time.perf_counter() - t1:.1f} s")


def _capacity_verdict(created: int, alive: int, before: int, used: float) -> str:
    """Met when CAPACITY_SESSIONS sessions are up and fit in 24 GiB with what ran before them."""
    if created == 0:
        return "NOT met"
    if created >= CAPACITY_SESSIONS:
        return "met" if before + used <= CAPACITY_BYTES and alive >= CAPACITY_SESSIONS else "NOT met"
    projected = before + used / created * CAPACITY_SESSIONS
    return ("met" if projected <= CAPACITY_BYTES else "NOT met") + f" (projected from {created})"


async def _destroy_all(backend: Any, concurrency: int) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def destroy(session_id: str) -> None:
        async with semaphore:
            await backend.destroy(session_id)

    infos = await backend.list()
    await asyncio.gather(*(destroy(i.session_id) for i in infos), return_exceptions=True)
    await backend.close()


# --- machine, clean-up, main -----------------------------------------------------------------


def _machine(image: str) -> list[str]:
    cpu = "unknown cpu"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    lines = [
        f"machine: {os.cpu_count()} cores ({cpu}), {_meminfo()['MemTotal'] / GIB:.1f} GiB RAM,"
        f" Linux {platform.release()}, Python {platform.python_version()},"
        f" load average {os.getloadavg()[0]:.1f} at start"
    ]
    try:
        import docker

        client = docker.from_env()
        info = client.info()
        lines.append(
            f"docker: engine {info.get('ServerVersion')} ({info.get('Driver')}, cgroup"
            f" v{info.get('CgroupVersion')}), docker-py {_version('docker')}; image {image} = {_image_id(image)};"
            f" {len(client.containers.list())} other running containers on the engine at start"
        )
    except Exception as exc:
        lines.append(f"docker: not reachable: {exc!r}")
    return lines


def _image_id(image: str) -> str:
    try:
        import docker

        img = docker.from_env().images.get(image)
        return f"{img.short_id} ({img.attrs.get('Size', 0) / 1e6:.0f} MB)"
    except Exception as exc:
        return f"unknown ({type(exc).__name__})"


def _run_containers(client: Any) -> list[Any]:
    found = client.containers.list(all=True, filters={"label": f"toolserver.instance={INSTANCE}"})
    return found + client.containers.list(all=True, filters={"name": PEER_PREFIX})


def _sweep() -> str:
    """Remove every container and directory this run started, whatever state it is in."""
    from sandbox.config import SandboxConfig

    shutil.rmtree(os.path.join(SandboxConfig().runtime_dir, INSTANCE), ignore_errors=True)
    shutil.rmtree(PEER_TMP, ignore_errors=True)
    try:
        import docker

        client = docker.from_env()
        found = _run_containers(client)
        for container in found:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        return f"{len(found)} left over and swept at the end, {len(_run_containers(client))} remaining"
    except Exception as exc:
        return f"clean-up could not reach Docker: {exc!r}"


_interrupted: list[int] = []


def _interrupt(signum: int, frame: Any) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def _run(args: argparse.Namespace, report: Report) -> None:
    runtimes: list[Runtime] = ["runc", "runsc"] if args.runtime == "both" else [args.runtime]
    phases: list[Callable[[], Coroutine[Any, Any, None]]] = []
    for runtime in runtimes:
        phases.append(functools.partial(bench_ours, args, report, runtime))
        if args.idle_sessions > 0:
            phases.append(functools.partial(bench_idle_memory, args, report, runtime))
    if not args.skip_peers:
        phases += [
            functools.partial(bench_autogen, args, report),
            functools.partial(bench_llm_sandbox, args, report),
        ]
    if args.sessions_capacity > 0:
        phases.append(functools.partial(bench_capacity, args, report))
    for phase in phases:
        asyncio.run(phase())
        if _interrupted:  # a library swallowed the interrupt (autogen turns cancellation into a result)
            raise KeyboardInterrupt


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sandbox.config import DEFAULT_IMAGE

    parser = argparse.ArgumentParser(
        prog="python -m bench.sandbox_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--iterations", type=int, default=20, help="cold starts / warm acquires per system")
    parser.add_argument("--calls", type=int, default=100, help="round trips per measurement")
    parser.add_argument("--sessions-capacity", type=int, default=100, help="idle sessions to hold (0: skip)")
    parser.add_argument("--capacity-concurrency", type=int, default=4, help="parallel creates in that run")
    parser.add_argument("--skip-peers", action="store_true", help="measure only our backend")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="image for every system (must be local)")
    parser.add_argument(
        "--runtime",
        choices=("runc", "runsc", "both"),
        default="runc",
        help="our backend's container runtime(s)",
    )
    parser.add_argument("--idle-sessions", type=int, default=4, help="idle sessions per runtime for memory")
    args = parser.parse_args(argv)
    if (
        min(args.iterations, args.calls, args.capacity_concurrency) < 1
        or min(args.sessions_capacity, args.idle_sessions) < 0
    ):
        parser.error("--iterations, --calls, --capacity-concurrency must be >= 1; --sessions-capacity >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    # One handler for both signals: asyncio.run's own SIGINT handling only cancels, which a peer may swallow.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    report = Report()
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine, image_id = _machine(args.image), _image_id(args.image)
    _log(f"run {RUN_ID}: ours{'' if args.skip_peers else ', autogen-ext, llm-sandbox'}")
    status = 0
    try:
        _run(args, report)
    except KeyboardInterrupt:
        _log("interrupted: cleaning up, then printing what was measured")
        report.notes.append("INTERRUPTED: the table is partial.")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        swept = _sweep()
    if _image_id(args.image) != image_id:
        report.notes.append(f"{args.image} was rebuilt during the run: now {_image_id(args.image)}")
    print(f"Sandbox benchmark, {when}, run {RUN_ID}")
    print("\n".join(machine))
    print(
        f"settings: {args.iterations} starts/acquires per system, {args.calls} calls per round trip,"
        f" capacity {args.sessions_capacity} sessions ({args.capacity_concurrency} concurrent creates)"
    )
    print()
    print_table(
        "Latencies in ms unless the measurement says otherwise; verdicts only for our targets",
        ["system", "measurement", "p50", "p95", "mean", "n", "target", "verdict", "notes"],
        [row.cells() for row in report.rows],
    )
    print()
    print("Notes:")
    for note in report.notes:
        print(f"- {note}")
    print(
        f"- total run time {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f} at"
        f" the end; run {RUN_ID} containers: {swept}."
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
