"""`toolserver up | down | status | image`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_commands"]

_NODE_SCAN_S = 10.0  # how often `toolserver up` looks for nodes that died or joined


def add_commands(commands: Any) -> None:
    """Add `up`, `down`, `status` and `image`."""
    up = commands.add_parser(
        "up",
        help="start the tool server (local Ray unless --address) and serve until Ctrl-C",
        description="Start Ray (or join --address / RAY_ADDRESS), reconcile sandboxes left by a previous run, "
        "deploy the HTTP API on Ray Serve, and serve until Ctrl-C, which removes the sandboxes it started.",
    )
    up.add_argument("--host", help="bind address (default 127.0.0.1, env TOOLSERVER_HOST)")
    up.add_argument("--port", type=int, help="port (default 8000, env TOOLSERVER_PORT)")
    up.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    up.add_argument(
        "--replicas",
        type=int,
        help="ingress replicas (default: 2 on distinct nodes on a cluster, 1 on one machine; env TOOLSERVER_REPLICAS)",
    )
    up.add_argument(
        "--fast-ingress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="HAProxy in front of the replicas instead of Serve's Python proxy: about half the CPU per call "
        "(needs the haproxy binary, which scripts/setup.sh installs; Ray binds HAProxy's stats page and "
        "metrics on every interface; env TOOLSERVER_FAST_INGRESS)",
    )
    up.add_argument("--pool-size", type=int, help="warm sandboxes kept per node (default 2)")
    up.add_argument("--home", help="state directory (default ~/.toolserver, env TOOLSERVER_HOME)")
    up.add_argument("--no-image-build", action="store_true", help="do not build the sandbox image if missing")
    up.set_defaults(run=_up)

    down = commands.add_parser("down", help="stop a server started with `toolserver up`")
    down.add_argument("--home", help="state directory")
    down.set_defaults(run=_down)

    status = commands.add_parser("status", help="show the running server's health")
    status.add_argument("--home", help="state directory")
    status.set_defaults(run=_status)

    image = commands.add_parser("image", help="build or inspect the sandbox image")
    image_cmds = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = image_cmds.add_parser(
        "build", help="build the sandbox image (skipped when it matches its inputs)"
    )
    build.add_argument("--tag", help="image tag (default toolserver-sandbox:latest)")
    build.add_argument(
        "--base", help="base image (default python:3.12-slim when available, else debootstrap)"
    )
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.add_argument(
        "--server",
        action="store_true",
        help="build the server image (Dockerfile at the repository root, default tag toolserver:latest) "
        "instead of the sandbox image",
    )
    build.set_defaults(run=_image_build)
    info = image_cmds.add_parser("status", help="is the sandbox image built and current?")
    info.add_argument("--tag", help="image tag")
    info.set_defaults(run=_image_status)


def _settings(args: argparse.Namespace) -> Any:
    from toolserver.config import Settings

    overrides = {
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "ray_address": getattr(args, "address", None),
        "replicas": getattr(args, "replicas", None),
        "pool_size": getattr(args, "pool_size", None),
        "fast_ingress": getattr(args, "fast_ingress", None),
        "home": getattr(args, "home", None),
    }
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _home(args: argparse.Namespace) -> Path:
    return Path(args.home or os.environ.get("TOOLSERVER_HOME", "~/.toolserver")).expanduser()


def _up(args: argparse.Namespace) -> int:
    from toolserver.serve.app import node_reports_summary, start_server, stop_server

    settings = _settings(args)
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    def install_handlers() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)

    # Installed before start-up so an early Ctrl-C still cleans up, and again as soon as Ray is up,
    # because starting Ray installs handlers of its own.
    install_handlers()
    if not args.no_image_build:
        _ensure_image(settings.sandbox_image)
    if not (settings.ray_address or os.environ.get("RAY_ADDRESS")):
        from foundation.ray_health import apply_health_check_env

        apply_health_check_env()  # node-health: the local Ray's GCS notices a lost node in ~4 s, not ~15 s
    print(f"starting toolserver (state in {settings.home}) ...", flush=True)
    started = time.monotonic()
    ray_up = threading.Event()

    def on_ray_ready() -> None:
        ray_up.set()
        install_handlers()

    try:
        handle = start_server(settings, on_ray_ready=on_ray_ready)
    except BaseException:
        # A start that failed before Ray came up started nothing: the sessions a crashed server left
        # to re-attach stay as they are (stop_server would mark them deleted).
        if ray_up.is_set():
            stop_server(settings=settings)
        raise
    install_handlers()
    summary = node_reports_summary(handle.reconcile)
    state = {"url": handle.url, "pid": os.getpid(), "instance_id": handle.instance_id}
    (settings.home / "server.json").write_text(json.dumps(state) + "\n")
    print(f"toolserver is up at {handle.url}  ({time.monotonic() - started:.1f} s)", flush=True)
    print(f"  admin key: {handle.admin_key_source}    secrets key: {handle.secrets_key_source}")
    print(
        f"  tenants' urls may reach: public addresses{', ' + settings.egress_allow if settings.egress_allow else ''}"
    )
    print(
        f"  sandbox nodes: {summary['nodes']}, sessions re-attached: {summary['reattached']}, "
        f"stale sandboxes removed: {summary['removed']}"
    )
    print(f"  agent runs resumed: {handle.runs['resumed']}, waiting for a human: {handle.runs['waiting']}")
    print(f"  {_runtimes_line(settings)}")
    print(f"  {_ingress_line(handle.ingress)}")
    print(f"  API docs: {handle.url}/docs    health: {handle.url}/healthz")
    print("press Ctrl-C to stop (removes the sandboxes this server started)", flush=True)
    try:
        last_scan = time.monotonic()
        while not stop.wait(1.0):
            if time.monotonic() - last_scan >= _NODE_SCAN_S:
                last_scan = time.monotonic()
                _watch_nodes(settings, handle.instance_id)
    finally:
        print("stopping: removing sandboxes and shutting Ray Serve down ...", flush=True)
        stop_server(settings=settings)
        (settings.home / "server.json").unlink(missing_ok=True)
        print("stopped")
    return 0


def _ingress_line(kind: str) -> str:
    """Which HTTP ingress serves clients (see `toolserver.serve.ingress.ingress_kind`)."""
    if kind == "haproxy":
        return "ingress: HAProxy in front of the replicas (--no-fast-ingress for Serve's Python proxy)"
    if kind == "direct":
        return "ingress: the ingress replica serves the port itself (TOOLSERVER_DIRECT_INGRESS=false: Serve's proxy)"
    return "ingress: Serve's proxies (--fast-ingress: HAProxy in front of the replicas, about half the CPU a call)"


def _runtimes_line(settings: Any) -> str:
    """Which runtimes sessions get and may ask for, and which ones this machine's engine has."""
    from sandbox.docker import engine_runtimes

    allowed = settings.allowed_runtime_list()
    line = f"sandbox runtime: {allowed[0]} (sessions may ask for {', '.join(allowed)}); this engine has: "
    try:
        offered = engine_runtimes()
    except Exception as exc:
        return line + f"unknown ({exc})"
    missing = [name for name in allowed if name not in offered]
    return (
        line
        + ", ".join(offered)
        + (f" -- MISSING {', '.join(missing)}: run scripts/setup.sh" if missing else "")
    )


def _watch_nodes(settings: Any, instance_id: str) -> None:
    """Mark the sessions of dead nodes lost; give nodes that joined later a sandbox manager."""
    from toolserver.nodes.ray_actors import start_missing_node_actors
    from toolserver.serve.app import ensure_singletons, mark_sessions_of_lost_nodes

    try:
        lost = mark_sessions_of_lost_nodes(settings)
        started = start_missing_node_actors(settings, instance_id)
        for name in ensure_singletons(settings):
            print(f"  {name} was gone: started again", flush=True)
    except Exception as exc:  # retried on the next scan
        print(f"  node watch failed: {exc}", flush=True)
        return
    if lost:
        print(f"  {len(lost)} session(s) on lost nodes marked lost", flush=True)
    for node_id in started:
        print(f"  sandbox node joined: {node_id[:12]}", flush=True)


def _ensure_image(tag: str) -> None:
    from sandbox.image import build_image

    build_image(tag, progress=lambda line: print(f"  [image] {line}", flush=True))


def _down(args: argparse.Namespace) -> int:
    path = _home(args) / "server.json"
    if not path.exists():
        print("no running toolserver found (no server.json in the state directory)")
        return 1
    pid = int(json.loads(path.read_text())["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        print("the server was not running; cleaned up its state file")
        return 0
    for _ in range(240):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print("stopped")
            return 0
        time.sleep(0.25)
    print(f"server (pid {pid}) did not stop within 60 s", file=sys.stderr)
    return 1


def _status(args: argparse.Namespace) -> int:
    from toolserver.client import Client

    if args.home:
        os.environ["TOOLSERVER_HOME"] = args.home
    with Client() as client:
        try:
            health = client.health()
        except Exception as exc:
            print(f"toolserver at {client.url} is not answering: {exc}")
            return 1
    print(json.dumps(health.model_dump(mode="json", exclude_unset=True), indent=2))
    return 0


def _image_build(args: argparse.Namespace) -> int:
    from sandbox.config import DEFAULT_IMAGE
    from sandbox.image import build_image

    if args.server:
        from toolserver.serve.image import SERVER_IMAGE, build_server_image

        build_server_image(args.tag or SERVER_IMAGE, base_image=args.base, force=args.force)
        return 0
    build_image(args.tag or DEFAULT_IMAGE, base_image=args.base, force=args.force)
    return 0


def _image_status(args: argparse.Namespace) -> int:
    from sandbox.config import DEFAULT_IMAGE
    from sandbox.image import image_status

    print(json.dumps(image_status(args.tag or DEFAULT_IMAGE), indent=2, default=str))
    return 0
