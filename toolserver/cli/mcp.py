"""`toolserver tools import-mcp`: register an MCP server's tools; a stdio server is bridged from this machine.

`--url` asks the server to import a Streamable HTTP MCP endpoint it can reach. `--command` starts a stdio MCP
server here, on your machine (never on the tool server: it is code), serves it on a local Streamable HTTP
bridge that only answers a random bearer token, imports the bridge's URL, and keeps running until Ctrl-C;
then it removes the imported tools (unless --keep) and stops the command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import secrets
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

from foundation.errors import Unauthorized
from toolserver.cli.output import plain
from toolserver.client import ApiError, AsyncClient, Client

__all__ = ["add_commands", "bridge_endpoint"]

_EXAMPLES = """\
examples:
  toolserver tools import-mcp --url https://mcp.example.com/mcp --header 'Authorization: Bearer xyz'
  toolserver tools import-mcp --url https://mcp.example.com/mcp --secret-header Authorization=EXAMPLE_TOKEN
  toolserver tools import-mcp --command 'python my_server.py' --prefix my_
  toolserver tools import-mcp --command 'npx -y @modelcontextprotocol/server-everything' --prefix ev_

A --command server runs on this machine, as you, with a minimal environment (HOME, PATH, ...), for as long
as this command runs. The tool server reaches it at --bridge-url (default http://127.0.0.1:PORT/mcp): on a
cluster, bind --bridge-host to an address the Ray nodes can reach and pass that as --bridge-url.
"""


def add_commands(commands: Any) -> None:
    """Add `import-mcp` under `tools` (the parser `remote.add_commands` made; it must run first)."""
    tools = commands.choices["tools"]
    actions = [a for a in tools._actions if isinstance(a, argparse._SubParsersAction)]
    parser = actions[0].add_parser(
        "import-mcp",
        help="register the tools of an MCP server (Streamable HTTP --url, or a stdio --command)",
        description=__doc__.split("\n\n", 1)[1],  # type: ignore[union-attr]
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a Streamable HTTP MCP endpoint the tool server can reach")
    source.add_argument("--command", help="a stdio MCP server command, run and bridged from this machine")
    parser.add_argument("--prefix", default="", help="put before every imported tool's name")
    parser.add_argument(
        "--header", action="append", default=[], metavar="'NAME: VALUE'", help="(--url) send this header"
    )
    parser.add_argument(
        "--secret-header",
        action="append",
        default=[],
        metavar="NAME=SECRET",
        help="(--url) send header NAME with the value of your secret SECRET (PUT /v1/secrets/SECRET)",
    )
    parser.add_argument("--timeout", type=float, help="seconds per call (default 30)")
    parser.add_argument("--bridge-host", default="127.0.0.1", help="(--command) bridge bind address")
    parser.add_argument(
        "--bridge-port", type=int, default=0, help="(--command) bridge port (default: any free)"
    )
    parser.add_argument("--bridge-url", help="(--command) the bridge's URL as the tool server sees it")
    parser.add_argument(
        "--keep", action="store_true", help="(--command) keep the tools when the bridge stops"
    )
    parser.set_defaults(run=_import_mcp)


def _import_mcp(args: argparse.Namespace) -> int:
    if args.command:
        return asyncio.run(_bridge(args))
    body = _import_body(args, args.url, _headers(args.header))
    with Client() as client:
        tools = client.tools.import_mcp(**body)
    print(json.dumps({"tools": plain(tools)}, indent=2, default=str))
    return 0


def _import_body(args: argparse.Namespace, url: str, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "prefix": args.prefix, "headers": headers}
    if args.secret_header:
        body["secret_headers"] = dict(_pair(item, "=") for item in args.secret_header)
    if args.timeout:
        body["timeout_s"] = args.timeout
    return body


def _headers(items: list[str]) -> dict[str, str]:
    return dict(_pair(item, ":") for item in items)


def _pair(item: str, sep: str) -> tuple[str, str]:
    name, found, value = item.partition(sep)
    if not found or not name.strip():
        sys.exit(f"error: expected NAME{sep}VALUE, got {item!r}")
    return name.strip(), value.strip()


# -- the stdio bridge ----------------------------------------------------------------------------------


def bridge_endpoint(upstream: Any, token: str) -> Any:
    """An ASGI app serving `upstream`'s tools (an entered `mcp.Client`) to callers with `token`."""
    import mcp_types as types
    from mcp.server.lowlevel import Server

    from toolserver.http.mcp_endpoint import McpEndpoint

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return await upstream.list_tools(cursor=params.cursor if params else None)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await upstream.call_tool(params.name, dict(params.arguments or {}))

    async def authenticate(authorization: str | None) -> None:
        if not hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode()):
            raise Unauthorized("this bridge answers only the tool server that imported it")

    server = Server("toolserver-bridge", on_list_tools=list_tools, on_call_tool=call_tool)
    return McpEndpoint(server, authenticate, max_body_bytes=16 * 1024 * 1024)


async def _bridge(args: argparse.Namespace) -> int:
    import uvicorn
    from mcp import Client as McpClient
    from mcp import StdioServerParameters
    from starlette.applications import Starlette
    from starlette.routing import Route

    argv = shlex.split(args.command)
    if not argv:
        sys.exit("error: --command is empty")
    if args.header or args.secret_header:
        sys.exit("error: --header and --secret-header go with --url; a bridge has its own token")
    token = secrets.token_urlsafe(32)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sock = socket.create_server((args.bridge_host, args.bridge_port))
    port = sock.getsockname()[1]
    url = args.bridge_url or f"http://{_reachable(args.bridge_host)}:{port}/mcp"
    # env=None: the command gets a minimal environment, never this shell's TOOLSERVER_API_KEY.
    params = StdioServerParameters(command=argv[0], args=argv[1:], env=None)
    async with McpClient(params, cache=None) as upstream, AsyncClient() as api:
        endpoint = bridge_endpoint(upstream, token)
        app = Starlette(routes=[Route("/mcp", endpoint)])
        server = _uvicorn_server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        names: list[str] = []
        try:
            while not server.started:
                if serving.done():
                    serving.result()
                    return 1
                await asyncio.sleep(0.02)
            body = _import_body(args, url, {"Authorization": f"Bearer {token}"})
            names = [tool.name for tool in await api.tools.import_mcp(**body)]
            print(json.dumps({"bridge": url, "tools": names}), flush=True)
            print(f"bridging {args.command!r} at {url}; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
        finally:
            if not args.keep:
                for name in names:
                    with contextlib.suppress(ApiError):
                        await api.tools.delete(name)
            server.should_exit = True
            await serving
            await endpoint.aclose()
    return 0


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _uvicorn_server(config: Any) -> Any:
    """uvicorn's server without its signal capture: this command handles SIGINT and SIGTERM itself."""
    import uvicorn

    class QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer(config)
