"""The shell contract: one persistent bash per session; output is capped; a timeout kills the command only."""

from __future__ import annotations

import pytest

from sandbox._output import truncation_marker
from tests.contract.conftest import OUTPUT_LIMIT, Subject

runs_code = pytest.mark.runs_code

HEAD, TAIL = OUTPUT_LIMIT * 3 // 4, OUTPUT_LIMIT - OUTPUT_LIMIT * 3 // 4


def _printing(text: str) -> str:
    """A command that prints `text` exactly (no newline added)."""
    return f'python3 -c "import sys; sys.stdout.write({text!r})"'


async def test_output_over_the_limit_keeps_its_head_and_tail_with_a_marker(subject: Subject) -> None:
    text = "H" * OUTPUT_LIMIT + "T" * OUTPUT_LIMIT
    command = _printing(text)
    subject.shell_prints(command, text)
    result = await subject.sandbox.shell(command)
    assert result.truncated
    assert result.output == "H" * HEAD + truncation_marker(len(text) - OUTPUT_LIMIT) + "T" * TAIL


async def test_output_at_the_limit_is_whole(subject: Subject) -> None:
    text = "x" * OUTPUT_LIMIT
    command = _printing(text)
    subject.shell_prints(command, text)
    result = await subject.sandbox.shell(command)
    assert (result.output, result.truncated) == (text, False)


@runs_code
async def test_cd_and_export_carry_over_to_the_next_command(subject: Subject) -> None:
    await subject.sandbox.shell("mkdir -p /workspace/sub && cd /workspace/sub && export GREETING=hello")
    result = await subject.sandbox.shell("pwd; echo $GREETING")
    assert (result.output, result.cwd, result.exit_code) == ("/workspace/sub\nhello\n", "/workspace/sub", 0)


@runs_code
async def test_exit_codes_come_back(subject: Subject) -> None:
    assert (await subject.sandbox.shell("true")).exit_code == 0
    assert (await subject.sandbox.shell("false")).exit_code == 1
    assert (await subject.sandbox.shell("(exit 7)")).exit_code == 7


@runs_code
async def test_stderr_is_part_of_the_output(subject: Subject) -> None:
    result = await subject.sandbox.shell("echo out; echo err >&2")
    assert result.output == "out\nerr\n"


@runs_code
async def test_a_timeout_kills_the_command_not_the_shell(subject: Subject) -> None:
    await subject.sandbox.shell("export KEEP=kept; cd /tmp")
    timed_out = await subject.sandbox.shell("sleep 30", timeout_s=1)
    assert (timed_out.timed_out, timed_out.exit_code) == (True, None)
    after = await subject.sandbox.shell("echo $KEEP; pwd")
    assert (after.output, after.timed_out, after.exit_code) == ("kept\n/tmp\n", False, 0)


@runs_code
async def test_the_shell_and_the_file_calls_share_the_workspace(subject: Subject) -> None:
    await subject.sandbox.write_file("shared/from-api.txt", b"api")
    assert (await subject.sandbox.shell("cat /workspace/shared/from-api.txt")).output == "api"
    await subject.sandbox.shell("printf shell > /workspace/shared/from-shell.txt")
    assert await subject.sandbox.read_file("shared/from-shell.txt") == b"shell"
    listed = [e.path for e in await subject.sandbox.list_files("shared")]
    assert listed == ["shared/from-api.txt", "shared/from-shell.txt"]
