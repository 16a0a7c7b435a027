"""Run registered Python tools inside the caller's sandbox kernel, never in the server process (invariant 1).

`build_invocation` writes a cell that defines the tool from its source in a fresh namespace, calls it with
the arguments, and prints one line: a per-call random marker followed by JSON, either
`{"ok": true, "result": ...}` or `{"ok": false, "error": {"type", "message", "traceback"}}`. The tool's own
prints are captured so they cannot push that line out of the (capped) output. Source and arguments travel
as base64 literals, so no text of theirs is ever spliced into code.
"""

from __future__ import annotations

import base64
import json
import secrets
from typing import Any

from foundation.errors import ValidationFailed
from toolserver.tools.base import CallContext, ToolCallFailed, ToolDraft, ToolRunner, ToolSpec, ToolTimeout
from toolserver.tools.schema import derive_schema

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "PythonToolRunner",
    "build_invocation",
    "new_marker",
    "parse_invocation_output",
]

# Under the sandbox's 64 KiB output cap, so the result line is never cut by truncation.
DEFAULT_MAX_RESULT_BYTES = 48 * 1024
DEFAULT_TIMEOUT_S = 30.0

_DRIVER = r"""
def _toolserver_invoke(source_b64, function, arguments_b64, marker, max_bytes):
    import base64, contextlib, inspect, io, json, linecache, traceback

    def emit(payload):
        try:
            line = json.dumps(payload, default=repr, allow_nan=False, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            try:
                payload["result"] = repr(payload["result"])
            except Exception as exc:
                payload["result"] = "<unrepresentable %s: %s>" % (type(payload["result"]).__name__, exc)
            line = json.dumps(payload, default=repr, ensure_ascii=False)
        size = len(line.encode("utf-8"))
        if size > max_bytes:
            message = "the result is %d bytes as JSON, over the cap of %d" % (size, max_bytes)
            error = {"type": "ResultTooLarge", "message": message, "traceback": ""}
            line = json.dumps({"ok": False, "error": error})
        print(marker + line, flush=True)

    def run_awaitable(awaitable):
        import asyncio, concurrent.futures

        async def wait():
            return await awaitable

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(wait())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # a kernel's loop is already running
            return pool.submit(asyncio.run, wait()).result()

    filename = "<tool %s>" % function
    captured = io.StringIO()
    try:
        source = base64.b64decode(source_b64).decode("utf-8")
        arguments = json.loads(base64.b64decode(arguments_b64).decode("utf-8"))
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        namespace = {"__name__": "__toolserver_tool__"}
        with contextlib.redirect_stdout(captured):
            exec(compile(source, filename, "exec"), namespace)
            if not callable(namespace.get(function)):
                raise LookupError("the tool's source defines no function %r" % function)
            tool = namespace[function]
            try:
                parameters = list(inspect.signature(tool).parameters.values())
            except (TypeError, ValueError):
                parameters = []
            positional_only = [p for p in parameters if p.kind is p.POSITIONAL_ONLY]
            last = max((i for i, p in enumerate(positional_only) if p.name in arguments), default=-1)
            positional = [arguments.pop(p.name, p.default) for p in positional_only[: last + 1]]
            result = tool(*positional, **arguments)
            if inspect.isawaitable(result):
                result = run_awaitable(result)
    except (Exception, SystemExit) as exc:
        frames = exc.__traceback__
        while frames is not None and frames.tb_frame.f_code.co_filename != filename:
            frames = frames.tb_next  # hide this driver's own frames
        lines = traceback.format_exception(type(exc), exc, frames) if frames else (
            traceback.format_exception_only(type(exc), exc)
        )
        error = {
            "type": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": "".join(lines)[-8000:],
            "stdout": captured.getvalue()[-2000:],
        }
        emit({"ok": False, "error": error})
        return
    emit({"ok": True, "result": result})
"""


def new_marker() -> str:
    """A fresh marker for one call's result line."""
    return f"__toolserver_result_{secrets.token_hex(16)}__"


def build_invocation(
    source: str,
    function: str,
    arguments: dict[str, Any],
    *,
    marker: str,
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
) -> str:
    """Code for the sandbox kernel: run `function` from `source` with `arguments`, print the result line."""
    if not isinstance(function, str) or not function.isidentifier():
        raise ValidationFailed(f"{function!r} is not a Python function name", field="function")
    if not marker or "\n" in marker:
        raise ValueError("the marker must be one non-empty line")
    try:
        encoded_arguments = json.dumps(arguments, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"arguments are not JSON: {exc}", field="arguments") from None
    call = ", ".join(
        repr(value)
        for value in (
            base64.b64encode(source.encode("utf-8")).decode("ascii"),
            function,
            base64.b64encode(encoded_arguments).decode("ascii"),
            marker,
            int(max_result_bytes),
        )
    )
    return f"{_DRIVER}\ntry:\n    _toolserver_invoke({call})\nfinally:\n    del _toolserver_invoke\n"


def parse_invocation_output(stdout: str, marker: str) -> Any:
    """The tool's result from the kernel's stdout; raise ToolCallFailed for an error or a missing result."""
    start = stdout.rfind(marker)
    if start < 0:
        raise ToolCallFailed("the tool printed no result line", error_type="no_result")
    line = stdout[start + len(marker) :].split("\n", 1)[0]
    try:
        payload = json.loads(line)
    except ValueError:
        raise ToolCallFailed("the tool's result line is not valid JSON", error_type="bad_result") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("ok"), bool):
        raise ToolCallFailed("the tool's result line has an unexpected shape", error_type="bad_result")
    if payload["ok"]:
        return payload.get("result")
    error = payload.get("error")
    if not isinstance(error, dict):
        error = {}
    kind = str(error.get("type") or "Error")
    message = str(error.get("message") or "")
    raise ToolCallFailed(
        f"{kind}: {message}" if message else kind,
        error_type=kind,
        traceback=error.get("traceback") or None,
        stdout=error.get("stdout") or None,
    )


class PythonToolRunner(ToolRunner):
    """Runs `python` tools (config: `source`, optional `function` and `timeout_s`) in `context.sandbox`."""

    def __init__(
        self,
        *,
        default_timeout_s: float = DEFAULT_TIMEOUT_S,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        self.default_timeout_s = default_timeout_s
        self.max_result_bytes = max_result_bytes

    def build_spec(self, draft: ToolDraft) -> ToolSpec:
        """A python tool from its `source`; schema and description come from the signature and docstring."""
        source = draft.fields.get("source")
        if not source:
            raise ValidationFailed("a python tool needs its source", field="source")
        derived = derive_schema(source, draft.fields.get("function"))
        config = {
            "source": source,
            "function": derived.name,
            "timeout_s": draft.fields.get("timeout_s") or self.default_timeout_s,
        }
        return draft.spec(
            config,
            description=draft.description or derived.description,
            parameters=draft.parameters or derived.parameters,
        )

    def needs_sandbox(self, tool: ToolSpec) -> bool:
        """Always: the tool's code runs only in the caller's sandbox kernel."""
        return True

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Run the tool in `context.sandbox`'s kernel and return what it returned."""
        if context.sandbox is None:
            raise ValidationFailed(
                f"the python tool {tool.name!r} runs in a sandbox session; pass session_id",
                field="session_id",
            )
        source = tool.config.get("source")
        if not isinstance(source, str) or not source.strip():
            raise ValidationFailed(f"the python tool {tool.name!r} has no source", field="config.source")
        function = tool.config.get("function") or derive_schema(source).name
        timeout_s = float(tool.config.get("timeout_s") or self.default_timeout_s)
        marker = new_marker()
        code = build_invocation(
            source, function, arguments, marker=marker, max_result_bytes=self.max_result_bytes
        )
        outcome = await context.sandbox.python(code, timeout_s=timeout_s)
        if outcome.status == "timeout":
            raise ToolTimeout(
                f"the tool {tool.name!r} did not finish within {timeout_s:g} s", timeout_s=timeout_s
            )
        if outcome.status == "error":
            error = outcome.error
            detail = f"{error.ename}: {error.evalue}" if error else "unknown error"
            raise ToolCallFailed(
                f"the sandbox kernel failed running the tool {tool.name!r}: {detail}",
                error_type=error.ename if error else "kernel_error",
                traceback="\n".join(error.traceback)[-8000:] if error else None,
            )
        try:
            return parse_invocation_output(outcome.stdout, marker)
        except ToolCallFailed as exc:
            if exc.error_type == "no_result" and outcome.truncated:
                raise ToolCallFailed(
                    "the tool printed no result line (the kernel's output was truncated)",
                    error_type="no_result",
                ) from None
            raise
