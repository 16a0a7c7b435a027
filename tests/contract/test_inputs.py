"""The input contract: what is refused before anything runs (code over its cap, timeouts out of range)."""

from __future__ import annotations

import pytest

from foundation.errors import PayloadTooLarge, UserError
from tests.contract.conftest import MAX_CODE_BYTES, Subject


async def test_code_over_the_cap_is_refused(subject: Subject) -> None:
    too_long = "#" * (MAX_CODE_BYTES + 1)
    with pytest.raises(PayloadTooLarge) as shell:
        await subject.sandbox.shell(too_long)
    assert shell.value.details["field"] == "command"
    with pytest.raises(PayloadTooLarge) as cell:
        await subject.sandbox.python(too_long)
    assert cell.value.details["field"] == "code"


async def test_the_code_cap_counts_utf8_bytes(subject: Subject) -> None:
    with pytest.raises(PayloadTooLarge):
        await subject.sandbox.shell(
            "é" * (MAX_CODE_BYTES // 2 + 1)
        )  # half as many characters, two bytes each


@pytest.mark.parametrize("timeout_s", [0, -1, 3600.5])
async def test_a_timeout_out_of_range_is_refused(subject: Subject, timeout_s: float) -> None:
    with pytest.raises(UserError) as shell:
        await subject.sandbox.shell("true", timeout_s)
    assert shell.value.details["field"] == "timeout_s"
    with pytest.raises(UserError) as cell:
        await subject.sandbox.python("1", timeout_s)
    assert cell.value.details["field"] == "timeout_s"
