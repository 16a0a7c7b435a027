"""The `toolserver` command: run the server, build the sandbox image, manage keys, tools and sessions."""

from __future__ import annotations

import argparse
import sys

from toolserver.cli import agents, environments, mcp, remote, server, ui

__all__ = ["main"]

_EPILOG = """\
examples:
  toolserver up                                  start on 127.0.0.1:8000 (local Ray, SQLite, Docker)
  toolserver image build                         build the sandbox image (skipped when up to date)
  toolserver keys create --namespace team-a      a tenant key (needs the admin key)
  toolserver sessions create                     a sandbox; then: toolserver sessions exec ID 'ls -la'
  toolserver tools register --kind python --file add.py
  toolserver tools call add --args '{"a": 1, "b": 2}'
  toolserver demo                                an offline agent run (scripted model) end to end
  toolserver agent run --agent NAME "task"       steps live; answer its questions at the prompt
  toolserver env example chat-room               a moderated multi-agent chat, offline, in the terminal

The CLI finds the server and the admin key in TOOLSERVER_HOME (default ~/.toolserver), or uses
TOOLSERVER_URL and TOOLSERVER_API_KEY.
"""


def build_parser() -> argparse.ArgumentParser:
    """The `toolserver` argument parser with every command."""
    parser = argparse.ArgumentParser(
        prog="toolserver",
        description="A distributed tool server and sandboxed execution backend for LLM agents.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    server.add_commands(commands)
    remote.add_commands(commands)
    mcp.add_commands(commands)
    agents.add_commands(commands)
    environments.add_commands(commands)
    ui.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `toolserver` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import httpx

        from foundation.errors import ToolServerError

        if isinstance(exc, ToolServerError):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if isinstance(exc, httpx.TransportError):
            print(
                f"error: cannot reach the tool server ({exc}); is `toolserver up` running?", file=sys.stderr
            )
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
