"""Cluster benchmark: session creation rate and sandbox capacity with 1 Ray node vs 3, and what routing costs.

    python -m bench.cluster_bench [--sessions N] [--capacity N] [--concurrency N] [--calls N]
    python -m bench.cluster_bench --kill-nodes [--rounds N] [--ray-default-health-checks]  (bench/cluster_kill.py)

Each configuration is a private `ray.cluster_utils.Cluster` on this machine (its own Ray temp directory,
one CPU per node), with one sandbox manager actor per node, a SQLite registry and the session service in
this process, as `toolserver up` wires them. ALL NODES SHARE THIS ONE MACHINE AND ITS ONE DOCKER ENGINE,
so three nodes cannot add real capacity here: the 3-node rows measure what placement and cross-node
routing cost, not how a cluster of real machines scales. Every container carries the run's instance label
(`toolserver.instance=cbench-<id>`) and is removed at the end, also on errors, Ctrl-C and SIGTERM.
Progress goes to standard error; the tables go to standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench._stats import percentiles, print_table

RUN_ID = uuid.uuid4().hex[:8]
INSTANCE = f"cbench-{RUN_ID}"
MIB = 1024**2


@dataclass
class Report:
    latencies: list[list[str]] = field(default_factory=list)
    summary: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def latency(self, config: str, measurement: str, samples_ms: list[float], note: str = "") -> None:
        if not samples_ms:
            self.latencies.append([config, measurement, "-", "-", "-", "0", note])
            return
        s = percentiles(samples_ms)
        self.latencies.append(
            [config, measurement, _num(s["p50"]), _num(s["p95"]), _num(s["mean"]), str(int(s["n"])), note]
        )


def _num(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _log(message: str) -> None:
    print(f"[cluster-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))


def _sandbox_memory(docker: Any) -> list[int]:
    """Memory in use (bytes, cgroup v1: usage - inactive file cache) of each of this run's containers."""
    found = []
    for container in docker.containers.list(filters={"label": f"toolserver.instance={INSTANCE}"}):
        base = f"/sys/fs/cgroup/memory/docker/{container.id}"
        try:
            with open(f"{base}/memory.usage_in_bytes") as usage, open(f"{base}/memory.stat") as stat:
                inactive = int(dict(line.split() for line in stat).get("total_inactive_file", "0"))
                found.append(int(usage.read()) - inactive)
        except OSError:
            continue
    return found


async def _timed(samples: list[float], op: Awaitable[Any]) -> Any:
    t0 = time.perf_counter()
    result = await op
    samples.append((time.perf_counter() - t0) * 1000)
    return result


async def _repeat(calls: int, op: Callable[[], Awaitable[Any]]) -> list[float]:
    samples: list[float] = []
    for _ in range(calls):
        await _timed(samples, op())
    return samples


# --- one configuration: a cluster of `nodes` Ray nodes ------------------------------------------


async def _measure(
    args: argparse.Namespace, nodes: int, settings: Any, names: dict[str, str], report: Report
) -> None:
    import docker

    from registry import Database
    from toolserver.api.requests import SessionCreate
    from toolserver.http.app import build_services
    from toolserver.nodes.ray_actors import RayNodes
    from toolserver.service.principal import Principal

    config = f"{nodes} node{'s' if nodes > 1 else ''}"
    load = os.getloadavg()[0]
    who = Principal(namespace="bench", key_id="bench")
    db = Database(settings.database)
    try:
        services = build_services(settings, db, RayNodes())
        sessions = services.sessions
        await services.nodes.choose()  # warm the directory: actor handles, node list
        report.latency(
            config,
            "placement decision (choose: stats of every node)",
            await _repeat(args.calls, services.nodes.choose),
        )

        sequential: list[float] = []
        placed: dict[str, str] = {}
        t0 = time.perf_counter()
        for _ in range(args.sessions):
            view = await _timed(sequential, sessions.create(who, SessionCreate()))
            placed[view["id"]] = view["node_id"]
        seq_rate = args.sessions / (time.perf_counter() - t0)
        report.latency(config, "create session, one at a time (cold container)", sequential)

        # Routing: the same `true` through the bare node actor, then through the session service.
        by_node: dict[str, str] = {}
        for session_id, node_id in placed.items():
            by_node.setdefault(node_id, session_id)
        for node_id in sorted(by_node, key=lambda n: names[n]):
            where = names[node_id]
            session_id = by_node[node_id]
            actor = await services.nodes.node(node_id)
            await actor.shell(session_id, "true", 10)
            report.latency(
                config,
                f"shell `true` via the node actor on {where} (Ray hop)",
                await _repeat(args.calls, functools.partial(actor.shell, session_id, "true", 10)),
            )
            report.latency(
                config,
                f"shell `true` via SessionService, sandbox on {where}",
                await _repeat(args.calls, functools.partial(sessions.shell, who, session_id, "true", 10)),
                note="+ registry read and touch (SQLite)",
            )

        # Capacity: fill up to --capacity sessions, --concurrency creates at a time.
        gate = asyncio.Semaphore(args.concurrency)
        concurrent: list[float] = []

        async def create_one() -> None:
            async with gate:
                view = await _timed(concurrent, sessions.create(who, SessionCreate()))
                placed[view["id"]] = view["node_id"]

        t0 = time.perf_counter()
        outcomes = await asyncio.gather(
            *(create_one() for _ in range(max(0, args.capacity - len(placed)))), return_exceptions=True
        )
        fill_s = time.perf_counter() - t0
        conc_rate = len(concurrent) / fill_s if concurrent else 0.0
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        report.latency(config, f"create session, {args.concurrency} at a time", concurrent)
        await asyncio.sleep(2.0)  # let the kernels settle before reading their memory
        memory = await asyncio.to_thread(_sandbox_memory, docker.from_env())
        per_session = sum(memory) / len(memory) if memory else 0.0
        fit = f"{_mem_available() / per_session:.0f}" if per_session else "-"

        answered: Counter[str] = Counter()
        for session_id, node_id in placed.items():
            with contextlib.suppress(Exception):
                result = await sessions.shell(who, session_id, "echo $TOOLSERVER_NODE", 20)
                if result.output.strip() == node_id:
                    answered[node_id] += 1
        split = " ".join(f"{names[n]}:{answered[n]}" for n in sorted(answered, key=lambda n: names[n]))
        report.summary.append(
            [
                config,
                f"{load:.1f}",
                f"{seq_rate:.2f}",
                f"{conc_rate:.2f}",
                f"{sum(answered.values())}/{len(placed)}",
                split,
                f"{per_session / MIB:.0f}" if per_session else "-",
                fit,
            ]
        )
        if errors:
            report.notes.append(f"{config}: {len(errors)} creates failed, first: {errors[0]!r}")

        t0 = time.perf_counter()
        await asyncio.gather(*(sessions.delete(who, s) for s in placed), return_exceptions=True)
        _log(f"{config}: removed {len(placed)} sessions in {time.perf_counter() - t0:.1f} s")
    finally:
        db.close()


def _run_config(args: argparse.Namespace, nodes: int, report: Report) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from toolserver.config import Settings
    from toolserver.nodes.ray_actors import RAY_NAMESPACE, start_node_actors, stop_node_actors

    ray_tmp = tempfile.mkdtemp(prefix="rcb-", dir="/tmp")  # short: Ray puts unix sockets under it
    home = tempfile.mkdtemp(prefix=f"{INSTANCE}-home-")
    os.environ["RAY_TMPDIR"] = ray_tmp
    _log(f"{nodes} node(s): starting the cluster")
    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        assert cluster.head_node is not None
        names = {cluster.head_node.node_id: "head"}
        for i in range(nodes - 1):
            name = f"node_{chr(ord('a') + i)}"
            names[cluster.add_node(num_cpus=1, resources={name: 1}).node_id] = name
        cluster.wait_for_nodes()
        _install_signal_handlers()  # starting Ray nodes installs handlers of its own
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        settings = Settings(home=home, pool_size=0, sandbox_image=args.image, max_sessions_per_namespace=0)
        start_node_actors(settings, INSTANCE, {})
        _log(f"{nodes} node(s): cluster and managers up in {time.perf_counter() - t0:.1f} s; measuring")
        asyncio.run(_measure(args, nodes, settings, names, report))
    finally:
        try:
            if ray.is_initialized():
                stop_node_actors()
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(ray_tmp, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
            os.environ.pop("RAY_TMPDIR", None)


async def _in_process_baseline(args: argparse.Namespace, report: Report) -> None:
    """The same `true` with the manager in this process: no Ray, no registry."""
    from sandbox.base import SandboxSpec
    from sandbox.config import SandboxConfig
    from sandbox.manager import SandboxManager

    manager = SandboxManager(
        SandboxConfig(image=args.image, pool_size=0, instance_id=INSTANCE, node_id="inproc")
    )
    try:
        info = await manager.create(SandboxSpec())
        await manager.shell(info.session_id, "true", 10)
        report.latency(
            "no Ray",
            "shell `true` on an in-process SandboxManager",
            await _repeat(args.calls, lambda: manager.shell(info.session_id, "true", 10)),
            note="baseline: guest daemon round trip",
        )
    finally:
        await manager.shutdown()


# --- clean-up, main -------------------------------------------------------------------------------


def _sweep(instance: str = INSTANCE) -> str:
    """Remove every container and host directory of this run (instance), whatever state it is in."""
    from sandbox.config import SandboxConfig

    root = os.path.join(SandboxConfig().runtime_dir, instance)
    if os.path.isdir(root):
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split()[4] for line in fh]
        for mount in mounts:  # each sandbox's /sbx is a small tmpfs when run as root
            if mount.startswith(root + os.sep):
                subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    try:
        import docker

        client = docker.from_env()
        found = client.containers.list(all=True, filters={"label": f"toolserver.instance={instance}"})
        for container in found:
            with contextlib.suppress(Exception):
                container.remove(force=True)
        left = client.containers.list(all=True, filters={"label": f"toolserver.instance={instance}"})
        return f"{len(found)} left over and swept, {len(left)} remaining"
    except Exception as exc:
        return f"clean-up could not reach Docker: {exc!r}"


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sandbox.config import DEFAULT_IMAGE

    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--sessions", type=int, default=6, help="sessions created one at a time per config")
    parser.add_argument("--capacity", type=int, default=15, help="sessions held per config (total, 0: skip)")
    parser.add_argument("--concurrency", type=int, default=3, help="parallel creates while filling up")
    parser.add_argument("--calls", type=int, default=30, help="round trips per latency measurement")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="sandbox image (must be local)")
    args = parser.parse_args(argv)
    if min(args.sessions, args.concurrency, args.calls) < 1 or args.capacity < 0:
        parser.error("--sessions, --concurrency, --calls must be >= 1; --capacity >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--kill-nodes" in argv:  # the node-loss benchmark: bench/cluster_kill.py
        from bench import cluster_kill

        return cluster_kill.main([a for a in argv if a != "--kill-nodes"])
    args = _parse_args(argv)
    _install_signal_handlers()
    report = Report()
    started = time.perf_counter()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_at_start = os.getloadavg()[0]
    status = 0
    try:
        asyncio.run(_in_process_baseline(args, report))
        for nodes in (1, 3):
            _run_config(args, nodes, report)
    except KeyboardInterrupt:
        _log("interrupted: cleaning up, then printing what was measured")
        report.notes.append("INTERRUPTED: the tables are partial.")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop the clean-up
        swept = _sweep()
    print(f"Cluster benchmark, {when}, run {RUN_ID}")
    print(
        f"machine: {os.cpu_count()} cores, load average {load_at_start:.1f} at start. ALL Ray nodes of both"
        " configurations run on this one machine and share its one Docker engine: 3 nodes cannot add real"
        " capacity here, so the 3-node rows show what placement and routing cost, not cluster scaling."
    )
    print(
        f"settings: {args.sessions} sessions created one at a time, then filled to {args.capacity} with"
        f" {args.concurrency} concurrent creates; {args.calls} calls per latency row; pool size 0 (every"
        " create starts a container and waits for its kernel); one CPU per Ray node."
    )
    print()
    print_table(
        "Latencies (ms)",
        ["config", "measurement", "p50", "p95", "mean", "n", "notes"],
        report.latencies,
    )
    print()
    print_table(
        "Creation rate and capacity",
        [
            "config",
            "load avg",
            "creates/s one at a time",
            f"creates/s {args.concurrency} at a time",
            "sessions answering",
            "per node",
            "MiB per sandbox",
            "sandboxes that fit in free RAM",
        ],
        report.summary,
    )
    print()
    print("Notes:")
    for note in report.notes:
        print(f"- {note}")
    print(
        "- 'sessions answering': sessions that ran `echo $TOOLSERVER_NODE` on the node the registry holds for"
        " them. 'MiB per sandbox': mean cgroup memory (usage - inactive file cache) of the idle sandboxes."
        " 'sandboxes that fit in free RAM': MemAvailable / that mean (memory only, CPU not counted), for the"
        " one engine all nodes share here; on a real cluster each machine adds its own. 'load avg': 1-minute"
        " load when the configuration started; other work on this 2-core machine makes the creation rates"
        " vary between runs."
    )
    print(
        f"- total run time {time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f} at"
        f" the end; run {RUN_ID} containers: {swept}."
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
