"""Python tools: the generated cell, run end to end in a subprocess standing in for the sandbox kernel."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from typing import Any

import pytest

from foundation.errors import ValidationFailed
from sandbox.base import FileEntry, PythonError, PythonResult, Sandbox, SandboxInfo, ShellResult
from toolserver.tools import (
    CallContext,
    PythonToolRunner,
    ToolCallFailed,
    ToolSpec,
    ToolTimeout,
    build_invocation,
    new_marker,
    parse_invocation_output,
)

# Runs a cell the way a Jupyter kernel does: inside an already running event loop.
_KERNEL_LIKE = (
    "import asyncio, sys\n"
    "cell = sys.stdin.read()\n"
    "async def main():\n"
    "    exec(compile(cell, '<cell>', 'exec'), {'__name__': '__main__'})\n"
    "asyncio.run(main())\n"
)


class _RecordingSandbox(Sandbox):
    """Answers `python()` by running the cell in a fresh `sys.executable` subprocess; records every cell."""

    def __init__(self, *, running_loop: bool = False) -> None:
        self.cells: list[str] = []
        self.running_loop = running_loop

    @property
    def info(self) -> SandboxInfo:
        raise NotImplementedError

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        self.cells.append(code)
        argv = [sys.executable, "-c", _KERNEL_LIKE] if self.running_loop else [sys.executable, "-c", code]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(code.encode() if self.running_loop else b""), timeout_s
            )
        except asyncio.TimeoutError:
            process.kill()
            await process.wait()
            return PythonResult(status="timeout")
        out, err = stdout.decode(), stderr.decode()
        if process.returncode != 0:
            last = (err.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
            ename, _, evalue = last.partition(": ")
            return PythonResult(
                status="error", stdout=out, stderr=err, error=PythonError(ename, evalue, err.splitlines())
            )
        return PythonResult(status="ok", stdout=out, stderr=err)

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        raise NotImplementedError

    async def restart_python(self) -> None:
        raise NotImplementedError

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        raise NotImplementedError

    async def read_file(self, path: str) -> bytes:
        raise NotImplementedError

    async def list_files(self, path: str = "") -> list[FileEntry]:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def python_tool(source: str, function: str | None = None, **config: Any) -> ToolSpec:
    config = {"source": textwrap.dedent(source), **config}
    if function:
        config["function"] = function
    return ToolSpec(name="tool", kind="python", config=config)


async def run(
    source: str, arguments: dict[str, Any], *, sandbox: _RecordingSandbox | None = None, **config: Any
) -> Any:
    sandbox = sandbox or _RecordingSandbox()
    context = CallContext(namespace="team-a", session_id="s1", sandbox=sandbox)
    return await PythonToolRunner().run(python_tool(source, **config), arguments, context)


ADD = """
def add(a: int, b: int = 2) -> int:
    '''Add two numbers.'''
    return a + b
"""


async def test_runs_the_tool_in_another_process() -> None:
    assert await run(ADD, {"a": 40}) == 42
    assert await run(ADD, {"a": 1, "b": 1}) == 2
    pid = await run("import os\ndef pid():\n    return os.getpid()\n", {})
    assert isinstance(pid, int) and pid != os.getpid()


async def test_structured_results_round_trip() -> None:
    source = """
    def shape(n):
        return {"n": n, "items": [1, 2.5, None, True, "é"], "nested": {"t": (1, 2)}}
    """
    assert await run(source, {"n": {"deep": [1]}}) == {
        "n": {"deep": [1]},
        "items": [1, 2.5, None, True, "é"],
        "nested": {"t": [1, 2]},
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{3}", "{3}"),
        ("object.__new__(Custom)", "<Custom>"),
        ("{'when': Custom()}", {"when": "<Custom>"}),  # only the unserialisable part becomes its repr
        ("float('nan')", "nan"),
        ("{(1, 2): 'tuple key'}", "{(1, 2): 'tuple key'}"),
        ("None", None),
    ],
)
async def test_non_json_results_come_back_as_repr(expression: str, expected: Any) -> None:
    source = f"""
    class Custom:
        def __repr__(self):
            return "<Custom>"

    def make():
        return {expression}
    """
    assert await run(source, {}) == expected


async def test_source_and_arguments_cannot_inject_code() -> None:
    source = '''
    def echo(text: str) -> str:
        """Quotes: \'\'\' and \\""" and a backslash \\\\ and {braces} %s."""
        return text
    '''
    nasty = "'''); import os; os._exit(3); ('''" + '"""\\n\\x00{marker}%s\n\r\u2028🙂'
    sandbox = _RecordingSandbox()
    assert await run(source, {"text": nasty}, sandbox=sandbox) == nasty
    cell = sandbox.cells[0]
    assert "os._exit" not in cell
    assert "Quotes" not in cell  # the source travels base64-encoded


async def test_tool_prints_do_not_disturb_the_result() -> None:
    source = """
    def chatty():
        print("marker-looking noise", "{\\"ok\\": false}")
        print("x" * 100_000)
        return "fine"
    """
    assert await run(source, {}) == "fine"


async def test_exceptions_become_tool_call_failures_with_a_traceback() -> None:
    source = """
    def divide(a, b):
        print("about to divide")
        return a / b
    """
    with pytest.raises(ToolCallFailed) as info:
        await run(source, {"a": 1, "b": 0})
    error = info.value
    assert error.error_type == "ZeroDivisionError"
    assert error.message == "ZeroDivisionError: division by zero"
    traceback = error.details["traceback"]
    assert "<tool divide>" in traceback and "return a / b" in traceback  # source lines are shown
    assert "_toolserver_invoke" not in traceback  # the driver's own frames are hidden
    assert error.details["stdout"] == "about to divide\n"
    assert not isinstance(error, ToolTimeout)


@pytest.mark.parametrize(
    ("source", "function", "error_type", "fragment"),
    [
        ("def f():\n    raise SystemExit(3)\n", None, "SystemExit", "SystemExit: 3"),
        ("def f():\n    return undefined_name\n", None, "NameError", "undefined_name"),
        (
            "import no_such_module_here\ndef f():\n    pass\n",
            None,
            "ModuleNotFoundError",
            "no_such_module_here",
        ),
        ("def f():\n    pass\n", "g", "LookupError", "no function 'g'"),
        ("g = 3\ndef f():\n    pass\n", "g", "LookupError", "no function 'g'"),
        ("def f(:\n", "f", "SyntaxError", "SyntaxError"),
        ("def f(a):\n    pass\n", None, "TypeError", "unexpected keyword argument 'z'"),
    ],
)
async def test_failures_inside_the_kernel(
    source: str, function: str | None, error_type: str, fragment: str
) -> None:
    with pytest.raises(ToolCallFailed) as info:
        await run(source, {"z": 1} if "f(a)" in source else {}, function=function)
    assert info.value.error_type == error_type
    assert fragment in info.value.message


async def test_positional_only_and_keyword_only_parameters() -> None:
    source = """
    def f(a, b=10, /, c=100, *, d):
        return [a, b, c, d]
    """
    assert await run(source, {"a": 1, "d": 4}) == [1, 10, 100, 4]
    assert await run(source, {"a": 1, "b": 2, "c": 3, "d": 4}) == [1, 2, 3, 4]


@pytest.mark.parametrize("running_loop", [False, True])
async def test_async_tools_are_awaited(running_loop: bool) -> None:
    source = """
    import asyncio

    async def slow_double(x: int) -> int:
        await asyncio.sleep(0.01)
        return 2 * x
    """
    assert await run(source, {"x": 21}, sandbox=_RecordingSandbox(running_loop=running_loop)) == 42


async def test_the_kernel_namespace_is_left_clean() -> None:
    cell = build_invocation(ADD, "add", {"a": 1}, marker=new_marker())
    probe = cell + "\nprint('GLOBALS', sorted(k for k in globals() if not k.startswith('__')))\n"
    result = await _RecordingSandbox().python(probe)
    assert "GLOBALS []" in result.stdout


async def test_timeout_is_a_tool_timeout() -> None:
    source = "import time\ndef sleepy():\n    time.sleep(10)\n"
    with pytest.raises(ToolTimeout) as info:
        await run(source, {}, timeout_s=0.5)
    assert info.value.error_type == "timeout"
    assert info.value.timeout_s == 0.5


async def test_a_dying_kernel_is_a_tool_failure() -> None:
    with pytest.raises(ToolCallFailed) as info:
        await run("import os\ndef die():\n    os._exit(1)\n", {})
    assert "kernel failed" in info.value.message
    with pytest.raises(ToolCallFailed) as info:
        await run("import os\ndef vanish():\n    os._exit(0)\n", {})
    assert info.value.error_type == "no_result"


async def test_oversized_results_are_refused_by_size() -> None:
    with pytest.raises(ToolCallFailed) as info:
        await run("def big():\n    return 'x' * 100_000\n", {})
    assert info.value.error_type == "ResultTooLarge"
    assert "over the cap of 49152" in info.value.message


async def test_a_session_is_required() -> None:
    with pytest.raises(ValidationFailed) as info:
        await PythonToolRunner().run(python_tool(ADD), {"a": 1}, CallContext(namespace="team-a"))
    assert info.value.field == "session_id"


async def test_a_source_is_required() -> None:
    context = CallContext(namespace="team-a", sandbox=_RecordingSandbox())
    with pytest.raises(ValidationFailed) as info:
        await PythonToolRunner().run(ToolSpec(name="t", kind="python"), {}, context)
    assert info.value.field == "config.source"


async def test_each_call_gets_its_own_marker() -> None:
    sandbox = _RecordingSandbox()
    await run(ADD, {"a": 1}, sandbox=sandbox)
    await run(ADD, {"a": 2}, sandbox=sandbox)
    markers = [cell.rsplit("__toolserver_result_", 1)[1][:32] for cell in sandbox.cells]
    assert markers[0] != markers[1]


# --- building and parsing, without a kernel ---------------------------------------------------------------


def test_build_invocation_refuses_bad_inputs() -> None:
    with pytest.raises(ValidationFailed) as info:
        build_invocation(ADD, "add; import os", {}, marker="m")
    assert info.value.field == "function"
    with pytest.raises(ValidationFailed) as info:
        build_invocation(ADD, "add", {"a": object()}, marker="m")
    assert info.value.field == "arguments"
    with pytest.raises(ValueError):
        build_invocation(ADD, "add", {}, marker="two\nlines")


def test_build_invocation_compiles_without_running() -> None:
    compile(build_invocation(ADD, "add", {"a": 1}, marker=new_marker()), "<cell>", "exec")


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ('M{"ok": true, "result": [1, 2]}\n', [1, 2]),
        ('noise\nM{"ok": true, "result": null}', None),
        ('partial lineM{"ok": true, "result": "x"}\nafter\n', "x"),
        ('M{"ok": true, "result": 1}\nM{"ok": true, "result": 2}\n', 2),
    ],
)
def test_parse_invocation_output(stdout: str, expected: Any) -> None:
    assert parse_invocation_output(stdout, "M") == expected


@pytest.mark.parametrize(
    ("stdout", "error_type"),
    [
        ("", "no_result"),
        ("no marker here", "no_result"),
        ("M{not json", "bad_result"),
        ("M[1, 2]", "bad_result"),
        ('M{"result": 1}', "bad_result"),
        ('M{"ok": false, "error": {"type": "KeyError", "message": "k", "traceback": "tb"}}', "KeyError"),
        ('M{"ok": false}', "Error"),
    ],
)
def test_parse_invocation_output_failures(stdout: str, error_type: str) -> None:
    with pytest.raises(ToolCallFailed) as info:
        parse_invocation_output(stdout, "M")
    assert info.value.error_type == error_type
