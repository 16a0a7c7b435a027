"""The backend contract: sandboxes are created for their owner, found by session id, destroyed once and for all."""

from __future__ import annotations

import pytest

from sandbox._ids import new_session_id
from sandbox.base import SandboxBackend, SandboxSpec
from sandbox.errors import SandboxNotFound


async def test_an_unknown_session_is_not_found(backend: SandboxBackend) -> None:
    with pytest.raises(SandboxNotFound):
        await backend.get("ses_no_such_session")


async def test_a_sandbox_is_found_until_it_is_destroyed(backend: SandboxBackend) -> None:
    sandbox = await backend.create(SandboxSpec(owner="team-a"))
    session_id = sandbox.info.session_id
    assert sandbox.info.owner == "team-a" and sandbox.info.network == "none"
    assert (await backend.get(session_id)).info == sandbox.info
    assert session_id in {info.session_id for info in await backend.list()}
    await backend.destroy(session_id)
    await backend.destroy(session_id)  # a second destroy is a no-op
    with pytest.raises(SandboxNotFound):
        await backend.get(session_id)
    assert session_id not in {info.session_id for info in await backend.list()}


async def test_a_session_id_can_be_chosen(backend: SandboxBackend) -> None:
    chosen = new_session_id()  # random: other test runs share the engine
    sandbox = await backend.create(SandboxSpec(), session_id=chosen)
    try:
        assert sandbox.info.session_id == chosen
        assert (await backend.get(chosen)) is sandbox
    finally:
        await backend.destroy(chosen)
