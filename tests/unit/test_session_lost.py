"""A session that died with its node answers 410 `session_lost` naming the node, never 404 as if it never was."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from foundation.errors import NotFound, SessionLost
from registry import Database, SessionStore
from sandbox.base import Limits
from toolserver.api import ErrorReply
from toolserver.client.errors import NotFoundError, SessionLostError, error_for
from toolserver.nodes.local import LocalNodes
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

TEAM = Principal(namespace="team-lost", key_id="key-lost")
NODE = "n" * 56


@pytest.fixture
def service(tmp_path: Path) -> SessionService:
    db = Database(f"sqlite:///{tmp_path / 'lost.db'}")
    return SessionService(SessionStore(db), LocalNodes({}), Limits(), 60.0)


def _session(service: SessionService, status: str = "running") -> str:
    record = service.store.create(TEAM.namespace, node_id=NODE, status=status)
    return record.id


async def test_a_call_on_a_vanished_node_marks_the_session_lost_and_says_so(service: SessionService) -> None:
    session_id = _session(service)
    for _ in range(2):  # the call that finds the node gone, and every call after
        with pytest.raises(SessionLost) as lost:
            await service.shell(TEAM, session_id, "echo hi", 5)
        assert (lost.value.status, lost.value.type) == (410, "session_lost")
        assert lost.value.to_dict()["node_id"] == NODE and lost.value.session_id == session_id
        assert "is lost" in lost.value.message and NODE[:12] in lost.value.message
    assert service.store.get(TEAM.namespace, session_id).status == "lost"


async def test_deleted_and_unknown_sessions_stay_404(service: SessionService) -> None:
    deleted = _session(service, status="deleted")
    for session_id in (deleted, "ses_never"):
        with pytest.raises(NotFound) as error:
            await service.shell(TEAM, session_id, "echo hi", 5)
        assert not isinstance(error.value, SessionLost) and error.value.status == 404


def test_the_error_crosses_processes_and_the_sdk_maps_410() -> None:
    error = pickle.loads(pickle.dumps(SessionLost("session s is lost", session_id="s", node_id=NODE)))
    assert (error.session_id, error.node_id, error.status) == ("s", NODE, 410)
    body = {"error": error.to_dict()}
    sdk = error_for(410, body)
    assert (
        isinstance(sdk, SessionLostError) and isinstance(sdk, NotFoundError) and isinstance(sdk, SessionLost)
    )
    assert (sdk.status_code, sdk.error_type, sdk.node_id, sdk.session_id) == (410, "session_lost", NODE, "s")
    assert ErrorReply.of(body).error.type == "session_lost"
