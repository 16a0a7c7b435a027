"""Builtin tools: the sandbox operations as function-calling tools, shared by every namespace."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from agent_core.tools import ASK_HUMAN_PARAMETERS, ASK_HUMAN_TOOL, HumanWait
from foundation.errors import UserError
from registry import HumanRequestStore
from toolserver.tools.base import CallContext, ToolRunner, ToolSpec

__all__ = ["BUILTIN_TOOLS", "BuiltinRunner"]


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "maximum": 3600, "description": "seconds (default 30)"}
_PATH = {"type": "string", "maxLength": 1024, "description": "path relative to the workspace"}

BUILTIN_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="shell",
        description="Run a bash command in the session's persistent shell (cd and export carry over). "
        "Returns exit_code, output, cwd, timed_out, truncated.",
        parameters=_obj({"command": {"type": "string"}, "timeout_s": _TIMEOUT}, ["command"]),
    ),
    ToolSpec(
        name="python",
        description="Run Python code in the session's persistent IPython kernel (variables carry over). "
        "Returns status, stdout, stderr, result, display and error.",
        parameters=_obj({"code": {"type": "string"}, "timeout_s": _TIMEOUT}, ["code"]),
    ),
    ToolSpec(
        name="read_file",
        description="Read a file from the session's workspace (UTF-8 text, or base64 for binary files).",
        parameters=_obj({"path": _PATH}, ["path"]),
    ),
    ToolSpec(
        name="write_file",
        description="Write a file into the session's workspace, creating parent directories.",
        parameters=_obj(
            {
                "path": _PATH,
                "content": {"type": "string"},
                "encoding": {"type": "string", "enum": ["utf-8", "base64"], "default": "utf-8"},
            },
            ["path", "content"],
        ),
    ),
    ToolSpec(
        name=ASK_HUMAN_TOOL,
        description="Ask a human for help or a decision. Called directly, it answers 202 with a request id "
        "to long-poll at /v1/human-requests/{id}?wait_s=; inside an agent run, the run pauses until answered.",
        parameters=ASK_HUMAN_PARAMETERS,
    ),
    ToolSpec(
        name="list_files",
        description="List a directory of the session's workspace (not recursive).",
        parameters=_obj({"path": {**_PATH, "default": ""}}, []),
    ),
)


class BuiltinRunner(ToolRunner):
    """Runs the builtin tools, shared by every namespace: sandbox operations on `context.sandbox` (the caller's
    session), and `ask_human`, which files a request for a human and returns a `HumanWait`."""

    def __init__(self, humans: HumanRequestStore) -> None:
        self.humans = humans

    def shared_tools(self) -> Sequence[ToolSpec]:
        """Every builtin tool: each namespace lists and calls them without registering them."""
        return BUILTIN_TOOLS

    def needs_sandbox(self, tool: ToolSpec) -> bool:
        """All but `ask_human`, which asks a person and touches no sandbox."""
        return tool.name != ASK_HUMAN_TOOL

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Run one builtin tool; `ask_human` answers a HumanWait for its new request."""
        if tool.name == ASK_HUMAN_TOOL:
            request = await asyncio.to_thread(
                self.humans.create,
                context.namespace,
                arguments["question"],
                context={"context": arguments.get("context"), "session_id": context.session_id},
            )
            return HumanWait(request_id=request.id, question=arguments["question"])
        sandbox = context.sandbox
        if sandbox is None:
            raise UserError(f"tool {tool.name} needs a session", field="session_id")
        timeout = float(arguments.get("timeout_s", 30.0))
        if tool.name == "shell":
            return asdict(await sandbox.shell(arguments["command"], timeout))
        if tool.name == "python":
            return asdict(await sandbox.python(arguments["code"], timeout))
        if tool.name == "read_file":
            data = await sandbox.read_file(arguments["path"])
            try:
                return {"path": arguments["path"], "encoding": "utf-8", "content": data.decode("utf-8")}
            except UnicodeDecodeError:
                return {
                    "path": arguments["path"],
                    "encoding": "base64",
                    "content": base64.b64encode(data).decode(),
                }
        if tool.name == "write_file":
            content = arguments["content"]
            try:
                data = (
                    base64.b64decode(content, validate=True)
                    if arguments.get("encoding") == "base64"
                    else content.encode("utf-8")
                )
            except ValueError as exc:
                raise UserError(f"content is not valid base64: {exc}", field="arguments.content") from None
            return asdict(await sandbox.write_file(arguments["path"], data))
        if tool.name == "list_files":
            return [asdict(e) for e in await sandbox.list_files(arguments.get("path", ""))]
        raise UserError(f"unknown builtin tool {tool.name}")
