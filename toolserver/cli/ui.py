"""`toolserver ui`: the console in the browser, for the people in the loop (needs the `ui` extra)."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import sys
from typing import Any

__all__ = ["add_commands"]

_DESCRIPTION = """\
Start the console: a web app (gradio) that talks to a running tool server only through its public API,
with one API key. Its pages:

  Waiting for you   the questions your agents asked a human (ask_human), live; answer one and its run resumes
  Runs              start a run of an agent; its steps stream in (tool calls, results, images); answer in place
  Chat room         a multi-agent environment as a chat: every message with its sender's role; speak in it,
                    step it or let it run; it creates the offline chat-room example (scripted agents)
  Sessions          the namespace's sandboxes: a shell, a Python console (plots shown), upload/download/view files

The key is found like the CLI finds it: --ask-key (typed here once), else TOOLSERVER_API_KEY, else the admin
key `toolserver up` wrote to TOOLSERVER_HOME (~/.toolserver). Each browser tab may enter another key at the top
of the page (another tenant's, say); the tab then sees only what that key may. With --no-default-key the
console uses no key of its own: every tab must enter one.

It binds 127.0.0.1 by default: whoever reaches the port acts with the console's key. Bind another address
only with --no-default-key.
"""

_EPILOG = """\
examples:
  toolserver ui                                  http://127.0.0.1:7860, the server and key of `toolserver up`
  toolserver ui --port 8080 --ask-key            type a tenant's key once, here
  TOOLSERVER_URL=http://10.0.0.5:8000 TOOLSERVER_API_KEY=tsk_... toolserver ui
  toolserver ui --host 0.0.0.0 --no-default-key  for a team: everyone enters their own key

Install the extra first: pip install 'toolserver[ui]'
"""


def add_commands(commands: Any) -> None:
    """Add `ui`."""
    parser = commands.add_parser(
        "ui",
        help="the console in the browser: answer agents, watch runs, join a chat room, use sessions",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", help="the tool server (default: TOOLSERVER_URL, else `toolserver up`'s)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port to bind (default 7860)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--ask-key", action="store_true", help="type the API key here (not echoed)")
    keys.add_argument(
        "--no-default-key", action="store_true", help="use no key of the console's own: each tab enters one"
    )
    parser.set_defaults(run=_run)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    # No calls home: the console talks to one server and nothing else.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("error: the console needs the ui extra: pip install 'toolserver[ui]'", file=sys.stderr)
        return 2
    from toolserver.console import Connection, build_app
    from toolserver.console.app import STYLE

    conn = Connection.from_environment(args.url, getpass.getpass("API key: ") if args.ask_key else None)
    if args.no_default_key:
        conn.default_key = None
    if not _loopback(args.host) and conn.default_key:
        print(
            f"error: --host {args.host} would let anyone who reaches it act with the console's key; "
            "add --no-default-key (each person enters their own)",
            file=sys.stderr,
        )
        return 2
    app = build_app(conn)
    print(f"console for {conn.url} on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        app.queue(default_concurrency_limit=16).launch(
            server_name=args.host,
            server_port=args.port,
            share=False,
            ssr_mode=False,
            mcp_server=False,
            show_error=False,
            quiet=True,
            css=STYLE,
            footer_links=[],
        )
    finally:
        conn.close()
    return 0
