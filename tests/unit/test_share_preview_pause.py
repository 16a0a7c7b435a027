"""A preview token that opens nothing leaves a paused session paused.

Anyone who ever held a share's URL knows its namespace and session (the token's first half); a revoked,
expired or made-up secret was checked only after the session had been resumed (and its last use moved on,
which holds off its idle pause and its TTL), so such a holder could keep a tenant's paused session running.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from foundation.errors import NotFound
from registry import Database, SessionStore
from sandbox.base import Limits
from tests.unit.test_pause import TEAM, KeepingBackend, _manager
from toolserver.api.requests import SessionCreate
from toolserver.http.routes.ports import _opened, _token
from toolserver.nodes.local import LocalNodes
from toolserver.service.sessions import SessionService


async def test_a_bad_preview_token_resumes_nothing_and_a_good_one_opens_its_share(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=KeepingBackend(node_id="local"))
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    sessions = SessionService(SessionStore(db), LocalNodes({"local": manager}), Limits(), 60.0)
    svc = SimpleNamespace(settings=SimpleNamespace(port_sharing=True), sessions=sessions)
    sid = (await sessions.create(TEAM, SessionCreate()))["id"]
    share = await manager.port_share(sid, 8080, 600)
    await sessions.pause(TEAM, sid)
    used = manager._paused()[sid].last_used
    for share_id, secret in ((share.id, "not-the-secret"), ("0123456789abcdef", share.secret)):
        with pytest.raises(NotFound):
            await _opened(svc, _token(TEAM.namespace, sid, 8080, share_id, secret))
        assert manager.is_paused(sid)
        assert (await sessions.get(TEAM, sid))["status"] == "paused"
    assert manager._paused()[sid].last_used == used
    who, session_id, port = await _opened(svc, _token(TEAM.namespace, sid, 8080, share.id, share.secret))
    assert (who.namespace, session_id, port) == (TEAM.namespace, sid, 8080)
