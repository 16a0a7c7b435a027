"""Node loss under load: SIGKILL each worker node of a 3-node cluster in turn; print the outage per service.

    python -m bench.cluster_bench --kill-nodes [--rounds N] [--ray-default-health-checks] [--database-url URL]

A `ray.cluster_utils.Cluster` on this machine (a head and two workers, one CPU each; the server's
singletons on the workers through `TOOLSERVER_SERVICE_RESOURCE`, so that their node can be killed), a
PostgreSQL registry (a throwaway server when the binaries are installed, else SQLite), the server started
as `toolserver up --address` starts it, real HTTP through Serve's proxies, and what `toolserver up` does
every 10 s (sessions of dead nodes marked lost, managers for nodes that joined, singletons started again).
A light steady load runs throughout, each service in its own loop every ~0.5 s: GET /healthz and /livez,
a shell call on a session of a node that is not about to be killed, a memory write, a run (started and
waited for), a message and a step in an environment. Each round SIGKILLs the worker that holds the run
scheduler, measures until every service works again, then lets the machine come back (a new worker on the
same Docker engine). A call is bad when it fails or takes longer than its service's slow bound (from a
warm-up before the first kill); the outage is from the start of the first bad call to the end of the
first good answer after the last one. Runs and memory items the API accepted are checked afterwards.
Progress goes to standard error, the table to standard output; every container is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench._cluster_state import actor_nodes, alive, node_containers
from bench._kill_load import (
    SERVICES,
    Load,
    finished,
    lost_session_codes,
    ok_response,
    outage,
    session_on,
    slow_bounds,
)
from bench._postgres import throwaway_postgres
from bench._stats import print_table

SERVICES_RESOURCE = "ts_services"
QUICK = [{"tool_calls": [{"name": "shell", "arguments": {"command": "echo step"}}]}, "done"]
KEEPER = {
    "name": "keeper",
    "router": "broadcast",
    "agents": [{"kind": "echo", "name": "echo", "role": "scribe"}],
}


def _log(message: str) -> None:
    print(f"[cluster-kill {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Env:
    cluster: Any
    settings: Any
    instance_id: str
    url: str
    key: str
    head: str
    workers: dict[str, Any] = field(default_factory=dict)  # node id -> Ray node, alive ones


def _watch(env: Env, stop: threading.Event, every_s: float) -> None:
    """What `toolserver up` does every 10 s."""
    from toolserver.nodes.ray_actors import start_missing_node_actors
    from toolserver.serve.app import ensure_singletons, mark_sessions_of_lost_nodes

    while not stop.wait(every_s):
        try:
            mark_sessions_of_lost_nodes(env.settings)
            for node_id in start_missing_node_actors(env.settings, env.instance_id):
                _log(f"a sandbox manager started on {node_id[:12]}")
            for name in ensure_singletons(env.settings):
                _log(f"{name} was gone: started again")
        except Exception as exc:
            _log(f"node watch failed: {exc!r}")


@contextlib.contextmanager
def _server(args: argparse.Namespace, database_url: str) -> Iterator[Env]:
    import ray
    from ray.cluster_utils import Cluster

    from bench.cluster_bench import _sweep
    from foundation.ray_health import NODE_HEALTH_CHECKS, RAY_DEFAULT_HEALTH_CHECKS
    from registry import Database, KeyStore
    from toolserver.config import Settings
    from toolserver.nodes.ray_actors import RAY_NAMESPACE
    from toolserver.serve.app import start_server, stop_server

    checks = RAY_DEFAULT_HEALTH_CHECKS if args.ray_default_health_checks else NODE_HEALTH_CHECKS
    ray_tmp = tempfile.mkdtemp(prefix="rck-", dir="/tmp")  # short: Ray puts unix sockets under it
    home = Path(tempfile.mkdtemp(prefix="cluster-kill-home-"))
    saved = {name: os.environ.get(name) for name in ("RAY_TMPDIR", "PYTHONPATH")}
    repo = str(Path(__file__).resolve().parents[1])
    os.environ["RAY_TMPDIR"] = ray_tmp
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, saved["PYTHONPATH"]) if p)
    head_args = {"num_cpus": 1, "include_dashboard": False, "_system_config": dict(checks)}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        home=home,
        database_url=database_url,
        pool_size=0,
        sandbox_image=args.image,
        port=port,
        service_resource=SERVICES_RESOURCE,
    )
    instance_id = ""
    try:
        assert cluster.head_node is not None
        env = Env(cluster, settings, "", "", "", str(cluster.head_node.node_id))
        for _ in range(2):
            node = cluster.add_node(num_cpus=args.worker_cpus, resources={SERVICES_RESOURCE: 1})
            env.workers[str(node.node_id)] = node
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        handle = start_server(settings)
        env.instance_id = instance_id = handle.instance_id
        env.url = handle.url
        db = Database(settings.database)
        try:
            _, env.key = KeyStore(db).create("bench-loss", "cluster-kill")
        finally:
            db.close()
        yield env
    finally:
        try:
            if ray.is_initialized():
                stop_server(settings=settings, shutdown_ray=True)
        finally:
            cluster.shutdown()
            if instance_id:
                _log(f"clean-up: {_sweep(instance_id)}")
            shutil.rmtree(ray_tmp, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@dataclass
class Round:
    victim: str
    held: list[str]
    kill_at: float
    end: float = 0.0
    dead_after: float | None = None
    lost_codes: dict[int, float] = field(default_factory=dict)
    restarted: dict[str, float] = field(default_factory=dict)  # singleton -> alive elsewhere after (s)
    stale_left: int = -1
    lost_runs: int = 0
    lost_memory: int = 0
    checked: tuple[int, int] = (0, 0)


async def _kill_round(
    env: Env, http: httpx.AsyncClient, load: Load, n: int, args: argparse.Namespace
) -> Round:
    """SIGKILL the worker that holds the run scheduler; measure until every service works; the machine comes back."""
    roles = actor_nodes()
    victim = next(iter(roles.get("run-scheduler", set()) & set(env.workers)), None) or sorted(env.workers)[0]
    held = sorted(role for role, nodes in roles.items() if victim in nodes)
    others = [env.head, *(w for w in sorted(env.workers) if w != victim)]
    load.shell_sessions = [await session_on(http, node) for node in others]
    lost_session = await session_on(http, victim)
    _log(
        f"round {n}: killing {victim[:12]} (holds {', '.join(held) or 'nothing'}), shell load on {len(others)} nodes"
    )
    await asyncio.to_thread(env.cluster.remove_node, env.workers.pop(victim), False)
    result = Round(victim, held, time.monotonic())
    codes = asyncio.get_running_loop().create_task(lost_session_codes(http, lost_session, result.kill_at))
    moved = asyncio.get_running_loop().create_task(_restarts(victim, held, result))
    while victim in await asyncio.to_thread(alive):
        await asyncio.sleep(0.25)
    result.dead_after = time.monotonic() - result.kill_at
    _log(f"round {n}: Ray declared the node dead after {result.dead_after:.1f} s")
    await _until_recovered(load, result.kill_at, args)
    result.lost_codes = await codes
    moved.cancel()
    await asyncio.sleep(args.settle_s)
    result.end = time.monotonic()
    load.round = n + 1
    # The machine comes back: a new node on the same engine; its manager removes the dead node's containers.
    # Ray starts a node only from the main thread: the load pauses meanwhile, after the round's measurement.
    from bench.cluster_bench import _install_signal_handlers
    from toolserver.nodes.ray_actors import start_missing_node_actors

    node = env.cluster.add_node(num_cpus=args.worker_cpus, resources={SERVICES_RESOURCE: 1})
    env.cluster.wait_for_nodes()
    _install_signal_handlers()
    env.workers[str(node.node_id)] = node
    await asyncio.to_thread(start_missing_node_actors, env.settings, env.instance_id)
    deadline = time.monotonic() + 60  # the node watch may be starting that manager right now
    while (
        left := await asyncio.to_thread(node_containers, env.instance_id, victim)
    ) and time.monotonic() < deadline:
        await asyncio.sleep(1.0)
    result.stale_left = left
    await _check_kept(http, load, n, result)
    _log(
        f"round {n}: done ({result.end - result.kill_at:.0f} s), lost runs {result.lost_runs}, memory {result.lost_memory}"
    )
    return result


async def _restarts(victim: str, held: list[str], result: Round) -> None:
    """When each singleton the victim held is alive again on another node (Ray's actor table, every 0.5 s)."""
    waiting = {role for role in held if role != "ingress"}
    while waiting:
        roles = await asyncio.to_thread(actor_nodes)
        for role in [r for r in waiting if roles.get(r, set()) - {victim}]:
            result.restarted[role] = time.monotonic() - result.kill_at
            waiting.discard(role)
        await asyncio.sleep(0.5)


async def _until_recovered(load: Load, since: float, args: argparse.Namespace) -> None:
    """Until every service's last three calls were good (and at least `min_round_s` after the kill)."""
    while time.monotonic() - since < args.max_round_s:
        await asyncio.sleep(1.0)
        if time.monotonic() - since < args.min_round_s:
            continue
        recent = {s: [c for c in load.calls if c.service == s and c.t0 > since][-3:] for s in SERVICES}
        if all(len(calls) == 3 and all(c.ok for c in calls) for calls in recent.values()):
            return
    _log(f"not every service was back within {args.max_round_s:.0f} s")


async def _check_kept(http: httpx.AsyncClient, load: Load, n: int, result: Round) -> None:
    """Every run of the round the API accepted has succeeded; every memory write is listed."""
    runs = list(load.runs.get(n, []))
    statuses = await asyncio.gather(*(finished(http, run_id, 120.0) for run_id in runs))
    result.lost_runs = sum(status != "succeeded" for status in statuses)
    written = load.memories.get(n, {})
    for scope, texts in written.items():
        stored = await ok_response(http, "GET", f"/v1/memory/{scope}", params={"k": 100})
        listed = {item["text"] for item in stored.json()["items"]} if stored is not None else set()
        result.lost_memory += len(texts - listed)
    result.checked = (len(runs), sum(len(texts) for texts in written.values()))


async def _measure(env: Env, args: argparse.Namespace) -> tuple[list[Round], dict[str, float], Load, int]:
    headers = {"Authorization": f"Bearer {env.key}"}
    # A new connection per request: one kept alive to a killed node's proxy would fail a later request.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=env.url, headers=headers, timeout=60, limits=limits) as http:
        body = {"name": "quick", "tools": ["shell"], "llm": {"provider": "scripted", "replies": QUICK}}
        (await http.post("/v1/agents", json=body)).raise_for_status()
        (await http.post("/v1/environments", json=KEEPER, timeout=120)).raise_for_status()
        load = Load(http, await session_on(http, env.head), args.interval)
        load.shell_sessions, load.round = [await session_on(http, env.head)], 1
        load.start()
        _log(f"warm-up: {args.warmup_s:.0f} s of load before the first kill")
        await asyncio.sleep(args.warmup_s)
        bounds = slow_bounds(load.calls, args.min_slow_s)
        rounds = []
        try:
            for n in range(1, args.rounds + 1):
                rounds.append(await _kill_round(env, http, load, n, args))
        finally:
            await load.stop()
    from toolserver.serve.app import stop_server

    await asyncio.to_thread(stop_server, settings=env.settings, shutdown_ray=False)  # `toolserver down`
    return rounds, bounds, load, await asyncio.to_thread(node_containers, env.instance_id)


def _rows(rounds: list[Round], bounds: dict[str, float], load: Load) -> list[list[str]]:
    rows = []
    for n, r in enumerate(rounds, 1):
        lost = {"runs": f"{r.lost_runs} of {r.checked[0]}", "memory": f"{r.lost_memory} of {r.checked[1]}"}
        for service in SERVICES:
            calls = [c for c in load.calls if c.service == service]
            o = outage(calls, r.kill_at, r.end, bounds[service])
            where = f"{n}: {r.victim[:8]} ({', '.join(r.held) or '-'})" if service == SERVICES[0] else ""
            times = ["not back" if o[k] is None else f"{o[k]:.1f}" for k in ("outage", "back")]
            rows.append([where, service, *times, str(o["errors"]), str(o["slow"]), lost.get(service, "-")])
    return rows


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from sandbox.config import DEFAULT_IMAGE

    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster_bench --kill-nodes", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="worker nodes killed one after another (default 2)"
    )
    parser.add_argument(
        "--ray-default-health-checks", action="store_true", help="Ray's own 3 s x 5 node checks"
    )
    parser.add_argument("--database-url", help="registry (default: a throwaway PostgreSQL, else SQLite)")
    parser.add_argument("--interval", type=float, default=0.5, help="pause between one service's calls (s)")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="load before the first kill (s)")
    parser.add_argument(
        "--min-slow-s", type=float, default=3.0, help="a call slower than this may count as bad"
    )
    parser.add_argument(
        "--min-round-s", type=float, default=20.0, help="measure at least this long after a kill"
    )
    parser.add_argument(
        "--max-round-s", type=float, default=180.0, help="give up on a service after this (s)"
    )
    parser.add_argument("--settle-s", type=float, default=5.0, help="load after the machine came back (s)")
    parser.add_argument(
        "--scan-s", type=float, default=10.0, help="the node watch's period (toolserver up: 10)"
    )
    parser.add_argument("--worker-cpus", type=int, default=1, help="CPUs each worker node offers Ray")
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="sandbox image (must be local)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from bench.cluster_bench import _install_signal_handlers

    args = _parse_args(argv)
    _install_signal_handlers()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_at_start, started = os.getloadavg()[0], time.monotonic()
    with contextlib.ExitStack() as stack:
        url = args.database_url or stack.enter_context(throwaway_postgres())
        home_db = tempfile.mkdtemp(prefix="cluster-kill-db-")
        stack.callback(shutil.rmtree, home_db, True)
        url = url or f"sqlite:///{home_db}/registry.db"
        _log(f"registry: {url.split('://')[0]}; starting a head and two workers")
        env = stack.enter_context(_server(args, url))
        _install_signal_handlers()  # starting Ray nodes installs handlers of its own
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(env, stop, args.scan_s), daemon=True)
        watcher.start()
        stack.callback(stop.set)
        with contextlib.redirect_stdout(sys.stderr):  # Ray's reports of the killed raylets print there
            rounds, bounds, load, left = asyncio.run(_measure(env, args))
    from foundation.ray_health import NODE_HEALTH_CHECKS, RAY_DEFAULT_HEALTH_CHECKS

    checks = RAY_DEFAULT_HEALTH_CHECKS if args.ray_default_health_checks else NODE_HEALTH_CHECKS
    print(
        f"Node-loss benchmark, {when}: a head (1 CPU) and 2 workers ({args.worker_cpus} CPU each)"
        f" on one {os.cpu_count()}-core machine"
    )
    print(
        f"Ray node health checks: {', '.join(f'{k}={v}' for k, v in checks.items())}"
        f" ({'Ray defaults' if args.ray_default_health_checks else 'ours, foundation/ray_health.py'});"
        f" load average {load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print_table(
        "Outage per killed node and service (seconds after the SIGKILL)",
        ["round: node killed (held)", "service", "outage s", "back after s", "errors", "slow calls", "lost"],
        _rows(rounds, bounds, load),
    )
    print()
    print("Per round:")
    for n, r in enumerate(rounds, 1):
        codes = ", ".join(
            f"{code} after {t:.1f} s" for code, t in sorted(r.lost_codes.items(), key=lambda kv: kv[1])
        )
        print(
            f"- round {n}: Ray declared the node dead after {r.dead_after:.1f} s; a session of the killed node"
            f" answered {codes or 'nothing'}; its containers left after its replacement's manager started:"
            f" {r.stale_left}; singletons alive again after: "
            + (", ".join(f"{k} {v:.1f} s" for k, v in sorted(r.restarted.items())) or "-")
        )
    print(
        f"- slow bounds (3 x warm-up p90, at least {args.min_slow_s:g} s): "
        + ", ".join(f"{s} {b:.1f} s" for s, b in bounds.items())
    )
    print(f"- containers of this run left after `toolserver down` (stop_server): {left}")
    print(f"- total run time {time.monotonic() - started:.0f} s")
    lost = sum(r.lost_runs + r.lost_memory for r in rounds)
    return 1 if lost or left else 0


if __name__ == "__main__":
    sys.exit(main())
