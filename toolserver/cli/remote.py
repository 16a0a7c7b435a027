"""`toolserver keys | tools | sessions`: thin commands over the HTTP API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from registry.secretbox import SecretBox
from toolserver.cli.output import print_json as _print
from toolserver.client import Client

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add `keys`, `tools` and `sessions`."""
    keys = commands.add_parser("keys", help="API keys (admin key needed)")
    keys_cmds = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_cmds.add_parser("create", help="make a key for a namespace; prints the key once")
    create.add_argument("--namespace", required=True, help="tenant namespace (lowercase, digits, - and _)")
    create.add_argument("--name", default="", help="a label for the key")
    create.add_argument("--admin", action="store_true", help="an admin key (manages keys)")
    create.set_defaults(run=lambda a: _print(_client().keys.create(a.namespace, a.name, a.admin)))
    keys_cmds.add_parser("list", help="list keys (never their secrets)").set_defaults(
        run=lambda a: _print({"keys": _client().keys.list()})
    )
    revoke = keys_cmds.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=lambda a: _client().keys.revoke(a.key_id))
    keys_cmds.add_parser(
        "secrets-key",
        help="print a new key for TOOLSERVER_SECRETS_KEY (seals secrets at rest; one per server, on every node)",
    ).set_defaults(run=lambda a: print(SecretBox.new_key()))

    tools = commands.add_parser("tools", help="list, search, register, call and remove tools")
    tools_cmds = tools.add_subparsers(dest="tools_command", metavar="ACTION", required=True)
    listing = tools_cmds.add_parser("list", help="tools visible to your key")
    listing.add_argument("--format", choices=["native", "openai", "mcp"], default="native")
    listing.set_defaults(run=lambda a: _print({"tools": _client().tools.list(a.format)}))
    search = tools_cmds.add_parser("search", help="ranked search over names and descriptions")
    search.add_argument("query")
    search.add_argument("-k", type=int, default=10)
    search.set_defaults(run=lambda a: _print({"results": _client().tools.search(a.query, a.k)}))
    register = tools_cmds.add_parser(
        "register", help="register a python tool (--file) or an http tool (--url)"
    )
    register.add_argument("--kind", choices=["python", "http"], required=True)
    register.add_argument("--name", help="tool name (python: default the function's name)")
    register.add_argument("--file", help="python source file holding the function")
    register.add_argument("--function", help="which function of the file (default: the only public one)")
    register.add_argument("--url", help="http tool URL, may contain {path_params}")
    register.add_argument("--method", default="GET")
    register.add_argument("--description", default="")
    register.add_argument("--parameters", help="JSON Schema of the arguments (python: derived when absent)")
    register.set_defaults(run=_register)
    call = tools_cmds.add_parser("call", help="call a tool with JSON arguments")
    call.add_argument("name")
    call.add_argument("--args", default="{}", help="arguments as a JSON object")
    call.add_argument("--session", help="session id (default: the namespace's tool sandbox)")
    call.set_defaults(run=lambda a: _print(_client().tools.call(a.name, json.loads(a.args), a.session)))
    remove = tools_cmds.add_parser("rm", help="remove a tool")
    remove.add_argument("name")
    remove.set_defaults(run=lambda a: _client().tools.delete(a.name))

    sessions = commands.add_parser("sessions", help="create, use and remove sandbox sessions")
    sessions_cmds = sessions.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    new = sessions_cmds.add_parser("create", help="start a sandbox session; prints its id")
    new.add_argument("--memory-mb", type=int)
    new.add_argument("--cpus", type=float)
    new.add_argument(
        "--network",
        choices=["none", "bridge"],
        default="none",
        help="none (default) or bridge (unfiltered; only where the operator allows it)",
    )
    new.add_argument(
        "--egress",
        metavar="NAMES",
        help="reach only these, through the node's proxy: comma-separated host, *.domain or either with :port"
        " (e.g. pypi.org,files.pythonhosted.org)",
    )
    new.add_argument("--ttl", type=float, help="idle seconds before it expires")
    new.set_defaults(run=_create_session)
    sessions_cmds.add_parser("ls", help="your live sessions").set_defaults(
        run=lambda a: _print({"sessions": _client().sessions()})
    )
    execute = sessions_cmds.add_parser("exec", help="run a shell command in a session")
    execute.add_argument("session_id")
    execute.add_argument("command")
    execute.add_argument("--timeout", type=float, default=30.0)
    execute.add_argument("--follow", action="store_true", help="print the output as it comes (streamed)")
    execute.set_defaults(run=_exec)
    python = sessions_cmds.add_parser("python", help="run Python code in a session's kernel")
    python.add_argument("session_id")
    python.add_argument("code")
    python.add_argument("--timeout", type=float, default=30.0)
    python.set_defaults(run=lambda a: _print(_client().attach(a.session_id).python(a.code, a.timeout)))
    rm = sessions_cmds.add_parser("rm", help="destroy a session and its container")
    rm.add_argument("session_id")
    rm.set_defaults(run=lambda a: _client().attach(a.session_id).delete())
    pause = sessions_cmds.add_parser(
        "pause", help="stop a session's container, keeping its files (and its memory under runsc)"
    )
    pause.add_argument("session_id")
    pause.set_defaults(run=lambda a: _print(_client().attach(a.session_id).pause()))
    resume = sessions_cmds.add_parser("resume", help="bring a paused session back (any call does it too)")
    resume.add_argument("session_id")
    resume.set_defaults(run=lambda a: _print(_client().attach(a.session_id).resume()))
    snapshot = sessions_cmds.add_parser("snapshot", help="keep a copy of a session's files to fork from")
    snapshot.add_argument("session_id")
    snapshot.set_defaults(run=lambda a: _print(_client().attach(a.session_id).snapshot()))
    fork = sessions_cmds.add_parser("fork", help="start sessions from a snapshot; prints their ids")
    fork.add_argument("snapshot_id")
    fork.add_argument("--count", type=int, default=1, help="how many (1-10)")
    fork.add_argument("--ttl", type=float, help="idle seconds before they expire")
    fork.set_defaults(
        run=lambda a: _print({"sessions": [s.id for s in _client().fork(a.snapshot_id, a.count, a.ttl)]})
    )

    snapshots = commands.add_parser("snapshots", help="list and delete snapshots")
    snapshots_cmds = snapshots.add_subparsers(dest="snapshots_command", metavar="ACTION", required=True)
    snapshots_cmds.add_parser("ls", help="your snapshots").set_defaults(
        run=lambda a: _print({"snapshots": _client().snapshots()})
    )
    drop = snapshots_cmds.add_parser("rm", help="delete a snapshot (its forks keep their files)")
    drop.add_argument("snapshot_id")
    drop.set_defaults(run=lambda a: _client().delete_snapshot(a.snapshot_id))


def _client() -> Client:
    return Client()


def _register(args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"kind": args.kind, "description": args.description}
    if args.parameters:
        body["parameters"] = json.loads(args.parameters)
    if args.kind == "python":
        if not args.file:
            sys.exit("error: --file is required for a python tool")
        body["source"] = Path(args.file).read_text()
        if args.function:
            body["function"] = args.function
        if not args.name:
            from toolserver.tools.schema import derive_schema

            args.name = derive_schema(body["source"], args.function).name
    else:
        if not args.url:
            sys.exit("error: --url is required for an http tool")
        body.update(url=args.url, method=args.method)
    body["name"] = args.name
    _print(_client().tools.register(**body))


def _create_session(args: argparse.Namespace) -> None:
    limits = {k: v for k, v in {"memory_mb": args.memory_mb, "cpus": args.cpus}.items() if v is not None}
    egress = [name.strip() for name in args.egress.split(",") if name.strip()] if args.egress else None
    session = _client().session(
        network=None if egress is not None else args.network,
        limits=limits or None,
        ttl_s=args.ttl or None,
        keep=True,
        egress=egress,
    )
    _print(session.info)


def _exec(args: argparse.Namespace) -> int:
    session = _client().attach(args.session_id)
    if args.follow:
        written: list[str] = []

        def show(text: str) -> None:
            written.append(text)
            sys.stdout.write(text)
            sys.stdout.flush()

        result = session.shell(args.command, args.timeout, on_stdout=show)
        if written and not written[-1].endswith("\n"):
            sys.stdout.write("\n")
    else:
        result = session.shell(args.command, args.timeout)
        sys.stdout.write(result.output)
        if result.output and not result.output.endswith("\n"):
            sys.stdout.write("\n")
    if result.timed_out:
        print(f"[timed out after {args.timeout:g} s]", file=sys.stderr)
    return int(result.exit_code or 0) if not result.timed_out else 124
