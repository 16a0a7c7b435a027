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
        tenant_key = admin.create_key("pg-team", "t")["key"]
    with Client(server.url, tenant_key) as tenant:
        tenant.register_tool(
            name="double", kind="python", source="def double(x: int) -> int:\n    return 2 * x\n"
        )
        sid = tenant.create_session()["id"]
        assert tenant.call_tool("double", {"x": 21}, sid)["result"] == 42
        tenant.shell(sid, "export PG_STATE=kept")
    server.crash()
    server.start()
    with Client(server.url, tenant_key) as tenant:
        assert tenant.call_tool("double", {"x": 4}, sid)["result"] == 8
        assert tenant.shell(sid, "echo $PG_STATE")["output"].strip() == "kept"
        assert [c["tool"] for c in tenant.audit()["calls"]][:2] == ["double", "double"]
    with Client(server.url, "tsk_not-a-key") as stranger, pytest.raises(ApiError) as denied:
        stranger.tools()
    assert denied.value.status_code == 401
