"""The Python contract: one persistent kernel per session; output is capped; a timeout keeps the state."""

from __future__ import annotations

import pytest

from sandbox._output import truncation_marker
from tests.contract.conftest import OUTPUT_LIMIT, Subject

runs_code = pytest.mark.runs_code


async def test_stdout_over_the_limit_keeps_its_head_and_tail_with_a_marker(subject: Subject) -> None:
    code = f"print('H' * {OUTPUT_LIMIT} + 'T' * {OUTPUT_LIMIT}, end='')"
    subject.cell_prints(code, "H" * OUTPUT_LIMIT + "T" * OUTPUT_LIMIT)
    result = await subject.sandbox.python(code)
    head = OUTPUT_LIMIT * 3 // 4
    assert (result.status, result.truncated) == ("ok", True)
    assert result.stdout == "H" * head + truncation_marker(OUTPUT_LIMIT) + "T" * (OUTPUT_LIMIT - head)


async def test_stdout_at_the_limit_is_whole(subject: Subject) -> None:
    code = f"print('x' * {OUTPUT_LIMIT}, end='')"
    subject.cell_prints(code, "x" * OUTPUT_LIMIT)
    result = await subject.sandbox.python(code)
    assert (result.stdout, result.truncated) == ("x" * OUTPUT_LIMIT, False)


@runs_code
async def test_state_carries_over_from_cell_to_cell(subject: Subject) -> None:
    assert (await subject.sandbox.python("x = 41")).status == "ok"
    result = await subject.sandbox.python("x + 1")
    assert (result.status, result.result) == ("ok", "42")


@runs_code
async def test_stdout_and_stderr_are_apart(subject: Subject) -> None:
    result = await subject.sandbox.python("import sys; print('out'); print('err', file=sys.stderr)")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")


@runs_code
async def test_an_exception_is_an_error_result_and_the_kernel_lives_on(subject: Subject) -> None:
    await subject.sandbox.python("kept = 'yes'")
    failed = await subject.sandbox.python("1 / 0")
    assert failed.status == "error" and failed.error is not None
    assert failed.error.ename == "ZeroDivisionError"
    assert (await subject.sandbox.python("kept")).result == "'yes'"


@runs_code
async def test_a_timeout_interrupts_the_cell_and_keeps_the_state(subject: Subject) -> None:
    await subject.sandbox.python("y = 5")
    timed_out = await subject.sandbox.python("import time; time.sleep(30)", timeout_s=1)
    assert timed_out.status == "timeout"
    assert (await subject.sandbox.python("y")).result == "5"


@runs_code
async def test_a_restart_gives_a_fresh_kernel(subject: Subject) -> None:
    await subject.sandbox.python("z = 1")
    await subject.sandbox.restart_python()
    after = await subject.sandbox.python("z")
    assert after.status == "error" and after.error is not None and after.error.ename == "NameError"


@runs_code
async def test_the_kernel_works_in_the_workspace(subject: Subject) -> None:
    await subject.sandbox.python("open('from-python.txt', 'w').write('py')")
    assert await subject.sandbox.read_file("from-python.txt") == b"py"
