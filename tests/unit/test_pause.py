"""The pure parts of pausing: the paused state on disk, the manager's bookkeeping, the service's caps and records.

`KeepingBackend` is the fake backend with the pause half of the Docker backend: it keeps a sandbox's files in
the paused directory (as JSON) and gives them to a new fake sandbox on resume, with a fresh kernel.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from foundation.errors import QuotaExceeded, Unavailable, UserError
from registry import Database, SessionStore
from registry.snapshots import SnapshotStore
from sandbox.base import Limits, SandboxInfo, SandboxSpec, VolumeMount
from sandbox.checkpoints import PausedState, load_state, paused_dirs, save_state, state_dir
from sandbox.config import SandboxConfig
from sandbox.errors import SandboxUnavailable
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.api.requests import SessionCreate
from toolserver.nodes.local import LocalNodes
from toolserver.nodes.session_pause import pause_fields
from toolserver.service.principal import Principal
from toolserver.service.sessions import SessionService

TEAM = Principal(namespace="team-p", key_id="key-p")


class KeepingBackend(FakeBackend):
    """A fake that can pause: files to the paused directory, back into a new sandbox on resume."""

    async def pause_sandbox(
        self, session_id: str, directory: str, cap_bytes: int
    ) -> tuple[SandboxInfo, dict[str, Any]]:
        sandbox = await self.get(session_id)
        files = {k: v.decode() for k, v in sandbox.files.items()}
        with open(os.path.join(directory, "files.json"), "w") as fh:
            json.dump(files, fh)
        await self.destroy(session_id)
        return sandbox.info, {"filesystem": True, "memory": False, "archive_bytes": len(json.dumps(files))}

    async def resume_sandbox(self, info: SandboxInfo, directory: str) -> tuple[Any, dict[str, Any]]:
        sandbox = await self.create(SandboxSpec(owner=info.owner), info.session_id)
        with open(os.path.join(directory, "files.json")) as fh:
            sandbox.files = {k: v.encode() for k, v in json.load(fh).items()}
        return sandbox, {"kernel": "fresh", "memory": False}


def _manager(tmp_path: Path, backend: Any = None, **config: Any) -> SandboxManager:
    settings = SandboxConfig(
        pool_size=0,
        allowed_images=("fake",),  # what the fake backend's sandboxes say they run
        paused_dir=str(tmp_path / "paused"),
        runtime_dir=str(tmp_path / "rt"),
        snapshots_dir=str(tmp_path / "snapshots"),
    )
    for name, value in config.items():
        settings = SandboxConfig(**{**settings.__dict__, name: value})
    return SandboxManager(settings, backend=backend or KeepingBackend(node_id="local"))


def test_a_paused_state_survives_its_file(tmp_path: Path) -> None:
    info = SandboxInfo(
        session_id="ses_1",
        container_id="c",
        owner="team",
        image="img",
        node_id="n",
        network="egress",
        limits=Limits(memory_mb=256),
        created_at=1.0,
        runtime="runsc",
        egress=("pypi.org",),
        volumes=(VolumeMount("vol_1", "/workspace/data", True),),
    )
    state = PausedState(
        info=info, paused_at=2.0, last_used=1.5, ttl_s=60.0, kept={"filesystem": True}, checkpointed=True
    )
    directory = state_dir(str(tmp_path / "paused"), "ses_1", create=True)
    save_state(directory, state)
    assert load_state(directory) == state
    assert paused_dirs(str(tmp_path / "paused")) == ["ses_1"]
    assert oct(os.stat(tmp_path / "paused").st_mode & 0o777) == "0o700"
    (Path(directory) / "state.json").write_text("{not json")
    assert load_state(directory) is None


async def test_pause_keeps_files_and_any_call_resumes(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    info = await manager.create(SandboxSpec(owner="team"), ttl_s=60)
    await manager.write_file(info.session_id, "note.txt", b"kept")
    told: list[tuple[str, str]] = []

    async def listen(session_id: str, status: str, what: dict[str, Any]) -> None:
        told.append((session_id, status))

    manager.pause_listener = listen
    paused = await manager.pause(info.session_id)
    assert paused["status"] == "paused" and paused["kept"]["filesystem"] is True
    assert (await manager.pause(info.session_id))["paused_at"] == paused["paused_at"]  # idempotent
    stats = await manager.stats()
    assert (stats["sandboxes_running"], stats["sandboxes_paused"]) == (0, 1)
    assert await manager.read_file(info.session_id, "note.txt") == b"kept"  # resumed first
    assert not manager.is_paused(info.session_id)
    assert told == [(info.session_id, "paused"), (info.session_id, "running")]
    assert (await manager.resume(info.session_id))["resumed"] is None
    assert paused_dirs(str(tmp_path / "paused")) == []


async def test_a_backend_without_pause_says_so(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=FakeBackend())
    info = await manager.create(SandboxSpec(owner="team"))
    with pytest.raises(SandboxUnavailable, match="cannot pause"):
        await manager.pause(info.session_id)
    assert await manager.shell(info.session_id, "echo still") is not None


async def test_idle_sessions_pause_and_paused_ones_end_at_their_ttl(tmp_path: Path) -> None:
    manager = _manager(tmp_path, pause_after_s=10.0)
    idle = await manager.create(SandboxSpec(owner="team"), ttl_s=100)
    now = time.time()
    assert await manager.expire_idle(now + 5) == [] and not manager.is_paused(idle.session_id)
    assert await manager.expire_idle(now + 20) == [] and manager.is_paused(idle.session_id)
    assert await manager.expire_idle(now + 200) == [idle.session_id]
    assert not manager.is_paused(idle.session_id) and paused_dirs(str(tmp_path / "paused")) == []


async def test_a_restarted_manager_finds_its_paused_sessions(tmp_path: Path) -> None:
    first = _manager(tmp_path)
    kept = await first.create(SandboxSpec(owner="team"), ttl_s=60)
    gone = await first.create(SandboxSpec(owner="team"), ttl_s=60)
    await first.write_file(kept.session_id, "a.txt", b"a")
    for info in (kept, gone):
        await first.pause(info.session_id)
    other = _manager(tmp_path, backend=KeepingBackend(node_id="other"), node_id="other")
    assert (await other.start({}))["paused"] == []  # another node on this machine leaves them alone
    await other.shutdown()
    assert len(paused_dirs(str(tmp_path / "paused"))) == 2
    second = _manager(tmp_path)
    report = await second.start({kept.session_id: 60.0})  # the registry no longer holds `gone`
    await second.shutdown()
    assert report["paused"] == [kept.session_id]
    assert paused_dirs(str(tmp_path / "paused")) == [kept.session_id]
    assert await second.read_file(kept.session_id, "a.txt") == b"a"


def test_pause_fields_record_what_the_node_answered() -> None:
    assert pause_fields("paused", {"paused_at": 3.0, "kept": {"filesystem": True}}) == {
        "paused_at": 3.0,
        "kept": {"filesystem": True},
        "resumed": None,
    }
    assert pause_fields("running", {"resumed": {"kernel": "fresh"}}) == {
        "paused_at": None,
        "resumed": {"kernel": "fresh"},
    }


async def test_the_service_records_pauses_and_caps_them(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=KeepingBackend(node_id="local"))
    db = Database(f"sqlite:///{tmp_path / 'p.db'}")
    service = SessionService(
        SessionStore(db),
        LocalNodes({"local": manager}),
        Limits(),
        60.0,
        max_per_namespace=2,
        max_paused_per_namespace=1,
    )
    first = (await service.create(TEAM, SessionCreate()))["id"]
    second = (await service.create(TEAM, SessionCreate()))["id"]
    view = await service.pause(TEAM, first)
    assert view["status"] == "paused" and view["kept"]["filesystem"] is True
    assert [s["status"] for s in await service.list(TEAM)] == ["paused", "running"]
    with pytest.raises(QuotaExceeded, match="TOOLSERVER_MAX_PAUSED_SESSIONS_PER_NAMESPACE"):
        await service.pause(TEAM, second)
    third = (await service.create(TEAM, SessionCreate()))["id"]  # a paused one leaves room for a running one
    with pytest.raises(QuotaExceeded, match="before resuming"):
        await service.shell(TEAM, first, "true", 5)
    await service.delete(TEAM, third)
    await service.shell(TEAM, first, "true", 5)  # auto-resume
    view = await service.get(TEAM, first)
    assert view["status"] == "running" and view["resumed"]["kernel"] == "fresh" and view["paused_at"] is None
    other = Principal(namespace="team-q", key_id="key-q")
    with pytest.raises(Exception, match=r"not found|no session"):
        await service.pause(other, first)


async def test_what_a_namespaces_paused_sessions_keep_is_capped(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=KeepingBackend(node_id="local"))
    db = Database(f"sqlite:///{tmp_path / 'b.db'}")
    service = SessionService(
        SessionStore(db), LocalNodes({"local": manager}), Limits(), 60.0, max_paused_bytes=100
    )
    first = (await service.create(TEAM, SessionCreate()))["id"]
    second = (await service.create(TEAM, SessionCreate()))["id"]
    for session in (first, second):
        await service.write_file(TEAM, session, "data.txt", b"x" * 60)
    assert (await service.pause(TEAM, first))["kept"]["archive_bytes"] > 60
    with pytest.raises(QuotaExceeded, match="TOOLSERVER_MAX_PAUSED_MB_PER_NAMESPACE"):
        await service.pause(TEAM, second)
    view = await service.get(TEAM, second)
    assert view["status"] == "running" and not manager.is_paused(second)  # undone: it runs on
    assert await service.read_file(TEAM, second, "data.txt") == b"x" * 60
    await service.resume(TEAM, first)
    assert (await service.pause(TEAM, second))["status"] == "paused"  # room again


class SnapshottingBackend(KeepingBackend):
    """KeepingBackend that also archives a running sandbox's files and unpacks them into another."""

    async def archive_sandbox(self, session_id: str, dest: str, cap_bytes: int) -> int:
        files = {k: v.decode() for k, v in (await self.get(session_id)).files.items()}
        Path(dest).write_text(json.dumps(files))
        return len(json.dumps(files))

    async def restore_sandbox(self, session_id: str, source: str) -> None:
        sandbox = await self.get(session_id)
        sandbox.files = {k: v.encode() for k, v in json.loads(Path(source).read_text()).items()}


def _snapshot_service(
    tmp_path: Path, managers: dict[str, Any], cap: int = 0, count: int = 0
) -> SessionService:
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    return SessionService(
        SessionStore(db),
        LocalNodes(managers),
        Limits(),
        60.0,
        snapshots=SnapshotStore(db),
        max_snapshot_bytes=cap,
        max_snapshots=count,
    )


async def test_forks_get_their_own_copy_and_a_gone_node_refuses_them(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=SnapshottingBackend(node_id="local"))
    service = _snapshot_service(tmp_path, {"local": manager})
    parent = (await service.create(TEAM, SessionCreate()))["id"]
    await service.write_file(TEAM, parent, "who.txt", b"parent")
    snap = await service.snapshot(TEAM, parent)
    forked = await service.create(TEAM, SessionCreate(from_snapshot=snap["snapshot_id"], count=2))
    ids = [f["id"] for f in forked["forks"]]
    assert len(set(ids)) == 2 and forked["id"] == ids[0]
    await service.write_file(TEAM, ids[0], "who.txt", b"fork")
    assert await service.read_file(TEAM, ids[1], "who.txt") == b"parent"
    assert await service.read_file(TEAM, parent, "who.txt") == b"parent"
    with pytest.raises(UserError, match="from_snapshot"):
        await service.create(TEAM, SessionCreate(count=2))
    elsewhere = _snapshot_service(tmp_path, {})  # the same registry, without the snapshot's node
    with pytest.raises(Unavailable, match="not copied between nodes"):
        await elsewhere.create(TEAM, SessionCreate(from_snapshot=snap["snapshot_id"]))


async def test_the_namespace_total_of_snapshots_is_capped(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=SnapshottingBackend(node_id="local"))
    service = _snapshot_service(tmp_path, {"local": manager}, cap=100)
    session = (await service.create(TEAM, SessionCreate()))["id"]
    await service.write_file(TEAM, session, "f", b"x" * 60)
    await service.snapshot(TEAM, session)
    with pytest.raises(QuotaExceeded, match="TOOLSERVER_MAX_SNAPSHOT_MB_PER_NAMESPACE"):
        await service.snapshot(TEAM, session)
    assert len(await service.list_snapshots(TEAM)) == 1
    assert len(os.listdir(tmp_path / "snapshots")) == 1  # the refused one's files are gone


async def test_pauses_and_resumes_asked_for_at_once_keep_their_caps(tmp_path: Path) -> None:
    manager = _manager(tmp_path)
    db = Database(f"sqlite:///{tmp_path / 'c.db'}")
    service = SessionService(
        SessionStore(db),
        LocalNodes({"local": manager}),
        Limits(),
        60.0,
        max_per_namespace=3,
        max_paused_per_namespace=1,
    )
    ids = [(await service.create(TEAM, SessionCreate()))["id"] for _ in range(3)]
    made = await asyncio.gather(*(service.pause(TEAM, sid) for sid in ids), return_exceptions=True)
    assert sum(1 for m in made if isinstance(m, QuotaExceeded)) == 2
    paused = next(sid for sid, m in zip(ids, made, strict=True) if isinstance(m, dict))
    calls = await asyncio.gather(*(service.shell(TEAM, paused, "true", 5) for _ in range(4)))
    assert len(calls) == 4 and manager.paused_count() == 0
    assert (await service.get(TEAM, paused))["status"] == "running"


class _EngineInfo:
    def __init__(self, root: str) -> None:
        self.root = root

    def info(self) -> dict[str, Any]:
        return {"DockerRootDir": self.root}


def test_a_checkpoints_size_is_read_from_the_engines_disk(tmp_path: Path) -> None:
    from sandbox.checkpoints import CHECKPOINT_NAME, checkpoint_bytes

    image = tmp_path / "containers" / "c1" / "checkpoints" / CHECKPOINT_NAME
    (image / "nested").mkdir(parents=True)
    (image / "checkpoint.img").write_bytes(b"x" * 1000)
    (image / "nested" / "pages").write_bytes(b"y" * 24)
    assert checkpoint_bytes(_EngineInfo(str(tmp_path)), "c1") == 1024
    assert checkpoint_bytes(_EngineInfo(str(tmp_path)), "c2") is None  # none there: not zero
    assert checkpoint_bytes(_EngineInfo(""), "c1") is None


async def test_the_namespace_count_of_snapshots_is_capped(tmp_path: Path) -> None:
    manager = _manager(tmp_path, backend=SnapshottingBackend(node_id="local"))
    service = _snapshot_service(tmp_path, {"local": manager}, count=2)
    session = (await service.create(TEAM, SessionCreate()))["id"]
    kept = [(await service.snapshot(TEAM, session))["snapshot_id"] for _ in range(2)]
    with pytest.raises(QuotaExceeded, match="TOOLSERVER_MAX_SNAPSHOTS_PER_NAMESPACE"):
        await service.snapshot(TEAM, session)
    other = Principal(namespace="team-q", key_id="key-q")
    theirs = (await service.create(other, SessionCreate()))["id"]
    assert (await service.snapshot(other, theirs))["snapshot_id"]  # another namespace's count is its own
    await service.delete_snapshot(TEAM, kept[0])
    assert (await service.snapshot(TEAM, session))["snapshot_id"]
