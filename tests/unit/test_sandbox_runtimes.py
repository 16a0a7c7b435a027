"""The runtime setting: which runtimes a session may name, the errors that say why not, and the pool per runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from sandbox.base import Limits, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.errors import RuntimeNotAllowed
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from sandbox.pool import SandboxPool
from toolserver.config import Settings


def test_a_runtime_the_operator_did_not_allow_is_refused_naming_the_setting() -> None:
    config = SandboxConfig(runtime="runc")
    config.check_spec(SandboxSpec(runtime="runc"))
    config.check_spec(SandboxSpec())
    with pytest.raises(RuntimeNotAllowed) as refused:
        config.check_spec(SandboxSpec(runtime="runsc"))
    assert refused.value.status == 422
    body = refused.value.to_dict()
    assert body["type"] == "runtime_not_allowed" and body["field"] == "runtime"
    assert body["setting"] == "TOOLSERVER_ALLOWED_RUNTIMES"
    assert "TOOLSERVER_ALLOWED_RUNTIMES" in body["message"] and "'runsc'" in body["message"]


def test_an_unknown_runtime_is_refused_without_pointing_at_the_setting() -> None:
    with pytest.raises(RuntimeNotAllowed) as refused:
        SandboxConfig().check_spec(SandboxSpec(runtime="kata"))  # type: ignore[arg-type]
    assert "setting" not in refused.value.to_dict()
    assert "runc, runsc" in refused.value.message


def test_the_default_runtime_is_always_allowed_and_comes_first() -> None:
    config = SandboxConfig(runtime="runsc", allowed_runtimes=("runc", "runsc"))
    assert config.runtimes == ("runsc", "runc")
    assert config.runtime_of(SandboxSpec()) == "runsc"
    assert config.runtime_of(SandboxSpec(runtime="runc")) == "runc"


def test_settings_default_to_runc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLSERVER_SANDBOX_RUNTIME", raising=False)
    monkeypatch.delenv("TOOLSERVER_ALLOWED_RUNTIMES", raising=False)
    config = Settings().sandbox_config(instance_id="i", node_id="n")
    assert (config.runtime, config.runtimes) == ("runc", ("runc",))


def test_settings_read_the_runtimes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLSERVER_SANDBOX_RUNTIME", "runsc")
    monkeypatch.setenv("TOOLSERVER_ALLOWED_RUNTIMES", " runc ,")
    config = Settings().sandbox_config(instance_id="i", node_id="n")
    assert (config.runtime, config.runtimes) == ("runsc", ("runsc", "runc"))


@pytest.mark.parametrize(
    ("name", "value"), [("TOOLSERVER_SANDBOX_RUNTIME", "kata"), ("TOOLSERVER_ALLOWED_RUNTIMES", "runc,lxc")]
)
def test_an_unknown_runtime_in_the_settings_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_warm_pool_keeps_sandboxes_of_each_allowed_runtime_and_hands_out_the_asked_one() -> None:
    async def scenario() -> None:
        config = SandboxConfig(runtime="runc", allowed_runtimes=("runsc",), pool_size=2)
        backend = FakeBackend()
        pool = SandboxPool(backend, config)
        pool.start()
        await pool.wait_full(5)
        assert pool.ready_by_runtime() == {"runc": 2, "runsc": 2}
        gvisor = await pool.acquire(SandboxSpec(runtime="runsc", owner="t"))
        default = await pool.acquire(SandboxSpec(owner="t"))
        assert (gvisor.info.runtime, default.info.runtime) == ("runsc", "runc")
        assert gvisor.info.session_id not in pool.pooled_ids() and gvisor.info.owner == "t"
        await pool.wait_full(5)  # refilled
        cold = await pool.acquire(SandboxSpec(runtime="runsc", limits=Limits(memory_mb=300)))
        assert cold.info.runtime == "runsc" and cold.info.session_id not in pool.pooled_ids()
        await pool.close()
        assert pool.ready == 0

    asyncio.run(scenario())


def test_the_manager_reports_the_runtimes_in_its_stats() -> None:
    async def scenario() -> None:
        manager = SandboxManager(
            SandboxConfig(allowed_runtimes=("runsc",), pool_size=0), backend=FakeBackend()
        )
        stats = await manager.stats()
        assert stats["runtimes"] == {
            "default": "runc",
            "allowed": ["runc", "runsc"],
            "engine": None,  # the fake has no engine to ask
            "pool_ready": {"runc": 0, "runsc": 0},
        }
        info = await manager.create(SandboxSpec(runtime="runsc"))
        assert info.runtime == "runsc"
        with pytest.raises(RuntimeNotAllowed):
            await SandboxManager(SandboxConfig(pool_size=0), backend=FakeBackend()).create(
                SandboxSpec(runtime="runsc")
            )

    asyncio.run(scenario())


async def _http_client(tmp_path: Path, config: SandboxConfig) -> tuple[httpx.AsyncClient, SandboxManager]:
    from registry import Database, KeyStore
    from toolserver.http.app import build_services, create_app
    from toolserver.nodes.local import LocalNodes

    settings = Settings(home=tmp_path, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(config, backend=FakeBackend("n"))
    services = build_services(settings, db, LocalNodes({"n": manager}))
    _, key = KeyStore(db).create("team-a", "a")
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(services)),
        base_url="http://t",
        headers={"Authorization": f"Bearer {key}"},
    )
    return client, manager


async def test_a_session_asks_for_an_allowed_runtime_and_its_info_reports_it(tmp_path: Path) -> None:
    config = SandboxConfig(pool_size=0, node_id="n", allowed_runtimes=("runsc",))
    client, manager = await _http_client(tmp_path, config)
    async with client:
        made = await client.post("/v1/sessions", json={"runtime": "runsc"})
        assert made.status_code == 201, made.text
        default = await client.post("/v1/sessions", json={})
        assert (made.json()["runtime"], default.json()["runtime"]) == ("runsc", "runc")
        got = await client.get(f"/v1/sessions/{made.json()['id']}")
        assert got.json()["runtime"] == "runsc"
        listed = {s["id"]: s["runtime"] for s in (await client.get("/v1/sessions")).json()["sessions"]}
        assert listed == {made.json()["id"]: "runsc", default.json()["id"]: "runc"}
        stats = (await client.get("/healthz")).json()["nodes"][0]["runtimes"]
        assert (stats["default"], stats["allowed"]) == ("runc", ["runc", "runsc"])
    await manager.shutdown()


async def test_a_runtime_the_server_does_not_allow_is_a_422_naming_the_setting(tmp_path: Path) -> None:
    client, manager = await _http_client(tmp_path, SandboxConfig(pool_size=0, node_id="n"))
    async with client:
        refused = await client.post("/v1/sessions", json={"runtime": "runsc"})
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["type"], error["field"], error["setting"]) == (
            "runtime_not_allowed",
            "runtime",
            "TOOLSERVER_ALLOWED_RUNTIMES",
        )
        unknown = await client.post("/v1/sessions", json={"runtime": "kata"})
        assert unknown.status_code == 422 and "runtime" in unknown.text
        assert (await client.get("/v1/sessions")).json()["sessions"] == []
    await manager.shutdown()


def test_up_names_the_runtimes_and_an_engine_that_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from toolserver.cli.server import _runtimes_line

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    line = _runtimes_line(Settings(sandbox_runtime="runsc", allowed_runtimes="runc"))
    assert line.startswith(
        "sandbox runtime: runsc (sessions may ask for runsc, runc); this engine has: unknown ("
    )
    assert "MISSING" not in line
