"""The tool server with its registry on a real PostgreSQL: state survives a crash and a restart."""

from __future__ import annotations

import pytest

from tests.integration import pg
from tests.integration.serverproc import ServerProcess
from toolserver.client import ApiError, Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray, pytest.mark.postgres]


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image):
    with pg.postgres_server() as url:
        home = tmp_path_factory.mktemp("tshome-pg")
        proc = ServerProcess(home, env={"TOOLSERVER_DATABASE_URL": url, "TOOLSERVER_POOL_SIZE": "0"})
        proc.start()
        yield proc
        proc.stop()


def test_keys_tools_sessions_and_audit_survive_a_crash_on_postgres(server):
    with Client(server.url, server.admin_key) as admin:
        tenant_key = admin.keys.create("pg-team", "t").key
    with Client(server.url, tenant_key) as tenant:
        tenant.tools.register(
            name="double", kind="python", source="def double(x: int) -> int:\n    return 2 * x\n"
        )
        session = tenant.session(keep=True)
        assert session.call_tool("double", {"x": 21}).result == 42
        session.shell("export PG_STATE=kept")
    server.crash()
    server.start()
    with Client(server.url, tenant_key) as tenant:
        session = tenant.attach(session.id)
        assert session.call_tool("double", {"x": 4}).result == 8
        assert session.shell("echo $PG_STATE").output.strip() == "kept"
        assert [c.tool for c in tenant.audit()][:2] == ["double", "double"]
    with Client(server.url, "tsk_not-a-key") as stranger, pytest.raises(ApiError) as denied:
        stranger.tools.list()
    assert denied.value.status_code == 401
