"""Pause and resume through the real API: `toolserver up`, real HTTP, real Docker.

One server serves the module (idle sessions pause after a few seconds); the last test restarts it to show
that a paused session outlives it. The memory case runs under runsc where the engine can checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

PAUSE_AFTER_S = 6
PAUSE_CAP_MB = 32  # files plus memory: an idle runsc sandbox's checkpoint is ~14 MiB


@pytest.fixture(scope="module")
def runtimes(docker_engine: Any) -> dict[str, bool]:
    """Which runtimes the engine has, and whether it can checkpoint (`docker checkpoint`: experimental mode)."""
    offered = docker_engine.info().get("Runtimes") or {}
    ping = docker_engine.api._get(docker_engine.api._url("/_ping"))
    return {
        "runsc": "runsc" in offered,
        "checkpoint": ping.headers.get("Docker-Experimental") == "true",
    }


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sandbox_image: str, runtimes: dict[str, bool]
) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "0",
        "TOOLSERVER_SANDBOX_IMAGE": sandbox_image,
        "TOOLSERVER_SESSION_PAUSE_AFTER_S": str(PAUSE_AFTER_S),
        "TOOLSERVER_MAX_PAUSED_SESSIONS_PER_NAMESPACE": "2",
        "TOOLSERVER_MAX_PAUSE_ARCHIVE_MB": str(PAUSE_CAP_MB),
    }
    if runtimes["runsc"]:
        env["TOOLSERVER_ALLOWED_RUNTIMES"] = "runsc"
    proc = ServerProcess(tmp_path_factory.mktemp("tshome"), env=env)
    proc.start()
    yield proc
    proc.stop()
    # Volumes stay mounted past the server by design; the test's own must not outlive the test.
    with open("/proc/self/mounts") as fh:
        mounted = [line.split()[1] for line in fh if str(proc.home) in line.split()[1]]
    for point in mounted:
        subprocess.run(["umount", point], check=False)


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b", "c")}


def _http(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=180)


@pytest.fixture(scope="module")
def a(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["a"]) as client:
        yield client


@pytest.fixture(scope="module")
def b(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["b"]) as client:
        yield client


def _session(client: httpx.Client, **body: Any) -> str:
    reply = client.post("/v1/sessions", json=body)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _shell(client: httpx.Client, session: str, command: str) -> tuple[int | None, str]:
    reply = client.post(f"/v1/sessions/{session}/shell", json={"command": command, "timeout_s": 120})
    assert reply.status_code == 200, reply.text
    return reply.json()["exit_code"], reply.json()["output"]


def _python(client: httpx.Client, session: str, code: str) -> dict[str, Any]:
    reply = client.post(f"/v1/sessions/{session}/python", json={"code": code, "timeout_s": 120})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _container_running(docker_engine: Any, session: str) -> bool:
    return bool(docker_engine.containers.list(filters={"name": f"tsbx-{session}"}))


def _until(check: Callable[[], bool], timeout_s: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(1.0)
    return check()


def _prepare(client: httpx.Client, session: str) -> int:
    """x = 41 in the kernel, a file in the workspace and one in /tmp, a background process; its pid."""
    assert _python(client, session, "x = 41")["status"] == "ok"
    assert _shell(client, session, "echo kept > /workspace/note.txt && echo t > /tmp/t.txt")[0] == 0
    started = client.post(f"/v1/sessions/{session}/processes", json={"command": "sleep 600"})
    assert started.status_code == 201, started.text
    return int(started.json()["pid"])


def test_pause_under_runc_keeps_the_files_and_says_the_kernel_is_fresh(
    a: httpx.Client, docker_engine: Any
) -> None:
    session = _session(a, runtime="runc")
    _prepare(a, session)
    paused = a.post(f"/v1/sessions/{session}/pause")
    assert paused.status_code == 200, paused.text
    body = paused.json()
    assert body["status"] == "paused" and body["paused_at"]
    assert body["kept"]["filesystem"] is True and body["kept"]["memory"] is False
    assert not _container_running(docker_engine, session)
    assert a.get(f"/v1/sessions/{session}").json()["status"] == "paused"
    assert session in {s["id"] for s in a.get("/v1/sessions").json()["sessions"]}
    # Any call resumes it first: the files are back, the kernel and the process are new.
    assert _shell(a, session, "cat /workspace/note.txt /tmp/t.txt") == (0, "kept\nt\n")
    assert _container_running(docker_engine, session)
    view = a.get(f"/v1/sessions/{session}").json()
    assert view["status"] == "running"
    assert view["resumed"]["kernel"] == "fresh" and view["resumed"]["memory"] is False
    assert _python(a, session, "x + 1")["error"]["ename"] == "NameError"
    assert _shell(a, session, "pgrep -x sleep || echo none")[1].strip() == "none"
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_pause_under_runsc_keeps_the_memory(
    a: httpx.Client, docker_engine: Any, runtimes: dict[str, bool]
) -> None:
    if not runtimes["runsc"]:
        pytest.skip("the Docker engine has no runsc runtime: scripts/setup.sh registers it")
    session = _session(a, runtime="runsc")
    pid = _prepare(a, session)
    assert _shell(a, session, "export KEPT_VAR=7; cd /tmp")[0] == 0
    paused = a.post(f"/v1/sessions/{session}/pause")
    assert paused.status_code == 200, paused.text
    assert not _container_running(docker_engine, session)
    kept = paused.json()["kept"]
    if not runtimes["checkpoint"]:
        # No checkpoint: the pause says why and keeps the files, as under runc.
        assert kept["memory"] is False and "checkpoint" in kept["note"], kept
        assert _shell(a, session, "cat /workspace/note.txt") == (0, "kept\n")
        assert a.delete(f"/v1/sessions/{session}").status_code == 204
        pytest.skip("the Docker engine was started without experimental mode: docker checkpoint is off")
    assert kept["memory"] is True, kept
    assert 0 < kept["memory_bytes"] < PAUSE_CAP_MB << 20, (
        kept
    )  # the server runs as root: it reads the engine's disk
    assert _python(a, session, "x + 1")["result"] == "42"
    process = a.get(f"/v1/sessions/{session}/processes/{pid}")
    assert process.status_code == 200 and process.json()["status"] == "running", process.text
    assert _shell(a, session, "cat /workspace/note.txt") == (0, "kept\n")
    assert a.get(f"/v1/sessions/{session}").json()["resumed"]["kernel"] == "restored"
    assert _shell(a, session, "echo $KEPT_VAR $PWD") == (0, "7 /tmp\n")  # the same shell
    assert _python(a, session, "x = 50")["status"] == "ok"
    again = a.post(f"/v1/sessions/{session}/pause")  # a second checkpoint of the restored sandbox
    assert again.status_code == 200 and again.json()["kept"]["memory"] is True, again.text
    assert _python(a, session, "x + 1")["result"] == "51"
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_a_memory_checkpoint_over_the_cap_keeps_the_files_only(
    a: httpx.Client, runtimes: dict[str, bool]
) -> None:
    if not (runtimes["runsc"] and runtimes["checkpoint"]):
        pytest.skip("needs runsc with the engine's checkpoints on (scripts/setup.sh)")
    session = _session(a, runtime="runsc")
    assert _python(a, session, f"import os\nblob = os.urandom({PAUSE_CAP_MB + 8} << 20)")["status"] == "ok"
    assert _shell(a, session, "echo kept > /workspace/note.txt")[0] == 0
    paused = a.post(f"/v1/sessions/{session}/pause")
    assert paused.status_code == 200, paused.text
    kept = paused.json()["kept"]
    assert kept["memory"] is False and "TOOLSERVER_MAX_PAUSE_ARCHIVE_MB" in kept["note"], kept
    assert _shell(a, session, "cat /workspace/note.txt") == (0, "kept\n")
    assert _python(a, session, "blob")["error"]["ename"] == "NameError"
    assert a.get(f"/v1/sessions/{session}").json()["resumed"]["kernel"] == "fresh"
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_a_pause_with_a_call_under_way_is_refused_and_cuts_nothing(
    a: httpx.Client, runtimes: dict[str, bool]
) -> None:
    runtime = "runsc" if runtimes["runsc"] and runtimes["checkpoint"] else "runc"
    session = _session(a, runtime=runtime)
    assert _python(a, session, "x = 41")["status"] == "ok"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(_shell, a, session, "sleep 3; echo done")
        time.sleep(1.0)
        refused = a.post(f"/v1/sessions/{session}/pause")
        assert refused.status_code == 409 and refused.json()["error"]["type"] == "session_busy", refused.text
        assert running.result(timeout=30) == (0, "done\n")  # the call was not cut
    assert a.get(f"/v1/sessions/{session}").json()["status"] == "running"
    paused = a.post(f"/v1/sessions/{session}/pause")  # nothing under way now
    assert paused.status_code == 200, paused.text
    assert paused.json()["kept"]["memory"] is (runtime == "runsc"), paused.text
    if runtime == "runsc":
        assert _python(a, session, "x + 1")["result"] == "42"
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_what_a_restored_sandbox_makes_in_its_daemons_directory_goes(
    a: httpx.Client, runtimes: dict[str, bool], docker_engine: Any
) -> None:
    if not (runtimes["runsc"] and runtimes["checkpoint"]):
        pytest.skip("needs runsc with the engine's checkpoints on (scripts/setup.sh)")
    session = _session(a, runtime="runsc")
    # It runs on through the checkpoint and tries to take the directory while the restore opens it.
    racer = "while true; do mkdir /sbx/guest/d; : > /sbx/guest/x; ln -s / /sbx/guest/l; done 2>/dev/null"
    started = a.post(f"/v1/sessions/{session}/processes", json={"command": racer})
    assert started.status_code == 201, started.text
    paused = a.post(f"/v1/sessions/{session}/pause")
    assert paused.status_code == 200 and paused.json()["kept"]["memory"] is True, paused.text
    container = docker_engine.containers.get(f"tsbx-{session}")
    (shared,) = [m["Source"] for m in container.attrs["Mounts"] if m["Destination"] == "/sbx"]
    assert os.listdir(os.path.join(shared, "guest")) == [
        "sbxd.sock"
    ]  # seen from the host: gVisor lists no /sbx
    assert oct(os.stat(os.path.join(shared, "guest")).st_mode & 0o777) == "0o755"
    assert _shell(a, session, "mkdir /sbx/guest/d || : > /sbx/guest/x || echo refused")[1].endswith(
        "refused\n"
    )
    assert os.listdir(os.path.join(shared, "guest")) == ["sbxd.sock"]
    assert a.get(f"/v1/sessions/{session}").json()["resumed"]["kernel"] == "restored"
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_resume_explicitly_and_other_tenants_see_nothing(a: httpx.Client, b: httpx.Client) -> None:
    session = _session(a)
    for path in ("pause", "resume"):
        assert b.post(f"/v1/sessions/{session}/{path}").status_code == 404
    assert a.post(f"/v1/sessions/{session}/pause").json()["status"] == "paused"
    assert a.post(f"/v1/sessions/{session}/pause").json()["status"] == "paused"  # idempotent
    assert b.post(f"/v1/sessions/{session}/shell", json={"command": "true"}).status_code == 404
    resumed = a.post(f"/v1/sessions/{session}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "running" and resumed.json()["resumed"]["kernel"] == "fresh"
    assert a.post(f"/v1/sessions/{session}/resume").json()["status"] == "running"
    assert a.post("/v1/sessions/ses_nosuch/pause").status_code == 404
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_a_pause_too_large_is_refused_and_the_session_keeps_running(a: httpx.Client) -> None:
    session = _session(a)
    assert _shell(a, session, "head -c 40000000 /dev/urandom > /workspace/big.bin")[0] == 0
    refused = a.post(f"/v1/sessions/{session}/pause")
    assert refused.status_code == 507, refused.text
    assert "TOOLSERVER_MAX_PAUSE_ARCHIVE_MB" in refused.json()["error"]["message"]
    assert a.get(f"/v1/sessions/{session}").json()["status"] == "running"
    assert _shell(a, session, "stat -c %s /workspace/big.bin") == (0, "40000000\n")
    assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_paused_sessions_have_their_own_cap(server: ServerProcess, keys: dict[str, str]) -> None:
    with _http(server, keys["c"]) as c:
        sessions = [_session(c) for _ in range(3)]
        for session in sessions[:2]:
            assert c.post(f"/v1/sessions/{session}/pause").status_code == 200
        over = c.post(f"/v1/sessions/{sessions[2]}/pause")
        assert over.status_code == 429, over.text
        assert "TOOLSERVER_MAX_PAUSED_SESSIONS_PER_NAMESPACE" in over.json()["error"]["message"]
        for session in sessions:
            assert c.delete(f"/v1/sessions/{session}").status_code == 204


def test_an_idle_session_pauses_then_ends_at_its_ttl(a: httpx.Client, docker_engine: Any) -> None:
    session = _session(a, ttl_s=25)
    assert _shell(a, session, "echo idle > /workspace/idle.txt")[0] == 0
    assert _until(lambda: a.get(f"/v1/sessions/{session}").json()["status"] == "paused")
    assert not _container_running(docker_engine, session)
    assert _until(lambda: a.get(f"/v1/sessions/{session}").status_code == 404)
    assert "expired" in a.get(f"/v1/sessions/{session}").json()["error"]["message"]


@pytest.mark.skipif(os.geteuid() != 0, reason="volumes are loop mounts: the server must run as root")
def test_a_paused_session_keeps_its_volume_and_gets_it_back(a: httpx.Client) -> None:
    assert a.post("/v1/volumes", json={"name": "held", "size_mb": 16}).status_code == 201
    session = _session(a, volumes=[{"name": "held", "path": "/workspace/data"}])
    assert _shell(a, session, "echo vol > /workspace/data/v.txt && echo ws > /workspace/w.txt")[0] == 0
    assert a.post(f"/v1/sessions/{session}/pause").status_code == 200
    # Still the paused session's: no other session takes it read-write, and it cannot be deleted.
    other = a.post("/v1/sessions", json={"volumes": [{"name": "held", "path": "/workspace/data"}]})
    assert other.status_code == 409, other.text
    assert a.delete("/v1/volumes/held").status_code == 409
    assert _shell(a, session, "cat /workspace/data/v.txt /workspace/w.txt") == (0, "vol\nws\n")
    assert a.delete(f"/v1/sessions/{session}").status_code == 204
    assert a.delete("/v1/volumes/held").status_code == 204


def test_three_forks_each_change_their_own_copy(a: httpx.Client, b: httpx.Client) -> None:
    parent = _session(a)
    assert _shell(a, parent, "echo parent > /workspace/who.txt")[0] == 0
    made = a.post(f"/v1/sessions/{parent}/snapshots")
    assert made.status_code == 201, made.text
    snap = made.json()
    assert snap["size_bytes"] > 0 and snap["memory"] is False and snap["session_id"] == parent
    assert b.post("/v1/sessions", json={"from_snapshot": snap["snapshot_id"]}).status_code == 404
    assert b.delete(f"/v1/snapshots/{snap['snapshot_id']}").status_code == 404
    assert snap["snapshot_id"] not in {s["snapshot_id"] for s in b.get("/v1/snapshots").json()["snapshots"]}
    assert a.post("/v1/sessions", json={"from_snapshot": snap["snapshot_id"], "count": 11}).status_code == 422
    forked = a.post("/v1/sessions", json={"from_snapshot": snap["snapshot_id"], "count": 3})
    assert forked.status_code == 201, forked.text
    forks = [f["id"] for f in forked.json()["forks"]]
    assert len(set(forks)) == 3 and parent not in forks
    for n, fork in enumerate(forks):
        assert (
            _shell(a, fork, f"cat /workspace/who.txt && echo fork{n} > /workspace/who.txt")[1] == "parent\n"
        )
    for n, fork in enumerate(forks):
        assert _shell(a, fork, "cat /workspace/who.txt") == (0, f"fork{n}\n")
    assert _shell(a, parent, "cat /workspace/who.txt") == (0, "parent\n")
    listed = {s["snapshot_id"] for s in a.get("/v1/snapshots").json()["snapshots"]}
    assert snap["snapshot_id"] in listed
    assert a.delete(f"/v1/snapshots/{snap['snapshot_id']}").status_code == 204
    assert a.post("/v1/sessions", json={"from_snapshot": snap["snapshot_id"]}).status_code == 404
    for session in (parent, *forks):
        assert a.delete(f"/v1/sessions/{session}").status_code == 204


def test_a_paused_session_outlives_a_server_restart(server: ServerProcess, keys: dict[str, str]) -> None:
    with _http(server, keys["a"]) as a:
        session = _session(a)
        assert _shell(a, session, "echo survived > /workspace/keep.txt")[0] == 0
        assert a.post(f"/v1/sessions/{session}/pause").status_code == 200
    server.crash()
    server.start()
    with _http(server, keys["a"]) as again:
        view = again.get(f"/v1/sessions/{session}")
        assert view.status_code == 200 and view.json()["status"] == "paused", view.text
        assert _shell(again, session, "cat /workspace/keep.txt") == (0, "survived\n")
        assert again.get(f"/v1/sessions/{session}").json()["status"] == "running"
        assert again.delete(f"/v1/sessions/{session}").status_code == 204


def test_a_memory_checkpoint_outlives_a_server_crash(
    server: ServerProcess, keys: dict[str, str], runtimes: dict[str, bool], docker_engine: Any
) -> None:
    if not (runtimes["runsc"] and runtimes["checkpoint"]):
        pytest.skip("needs runsc with the engine's checkpoints on (scripts/setup.sh)")
    with _http(server, keys["a"]) as a:
        session = _session(a, runtime="runsc")
        assert _python(a, session, "x = 41")["status"] == "ok"
        paused = a.post(f"/v1/sessions/{session}/pause")
        assert paused.status_code == 200 and paused.json()["kept"]["memory"] is True, paused.text
    server.crash()
    server.start()
    with _http(server, keys["a"]) as again:
        assert again.get(f"/v1/sessions/{session}").json()["status"] == "paused"
        assert (
            _python(again, session, "x + 1")["result"] == "42"
        )  # the stopped container was kept, and restored
        assert again.get(f"/v1/sessions/{session}").json()["resumed"]["kernel"] == "restored"
        assert again.delete(f"/v1/sessions/{session}").status_code == 204
    assert not docker_engine.containers.list(all=True, filters={"name": f"tsbx-{session}"})


def test_the_sdk_pauses_resumes_snapshots_and_forks(server: ServerProcess, keys: dict[str, str]) -> None:
    with Client(server.url, keys["a"]) as ts, ts.session() as s:
        s.files.write("note.txt", "parent")
        paused = s.pause()
        assert paused.status == "paused" and paused.kept is not None and paused.kept.filesystem
        assert s.shell("cat note.txt").output == "parent"  # any call resumes it
        assert s.refresh().status == "running"
        s.pause()
        resumed = s.resume()
        assert resumed.status == "running" and resumed.resumed is not None
        snap = s.snapshot()
        assert snap.session_id == s.id and snap.size_bytes > 0
        assert snap.snapshot_id in [x.snapshot_id for x in ts.snapshots()]
        forks = ts.fork(snap.snapshot_id, count=2)
        try:
            assert len({f.id for f in forks} | {s.id}) == 3
            for fork in forks:
                assert fork.files.read_text("note.txt") == "parent"
        finally:
            for fork in forks:
                fork.delete()
        ts.delete_snapshot(snap.snapshot_id)
        assert snap.snapshot_id not in [x.snapshot_id for x in ts.snapshots()]


def _cli(server: ServerProcess, key: str, *args: str) -> Any:
    env = {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": key}
    done = subprocess.run(
        [sys.executable, "-m", "toolserver.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_the_cli_pauses_snapshots_and_forks(server: ServerProcess, keys: dict[str, str]) -> None:
    key = keys["a"]
    sid = _cli(server, key, "sessions", "create")["id"]
    _cli(server, key, "sessions", "exec", sid, "echo from-cli > /workspace/f.txt")  # exit 0, or it raises
    assert _cli(server, key, "sessions", "pause", sid)["status"] == "paused"
    assert _cli(server, key, "sessions", "resume", sid)["status"] == "running"
    snap = _cli(server, key, "sessions", "snapshot", sid)["snapshot_id"]
    assert snap in [s["snapshot_id"] for s in _cli(server, key, "snapshots", "ls")["snapshots"]]
    (fork,) = _cli(server, key, "sessions", "fork", snap)["sessions"]
    with Client(server.url, key) as ts:
        assert ts.attach(fork).files.read_text("f.txt") == "from-cli\n"
        ts.attach(fork).delete()
    assert _cli(server, key, "snapshots", "rm", snap) is None
    assert snap not in [s["snapshot_id"] for s in _cli(server, key, "snapshots", "ls")["snapshots"]]
    assert _cli(server, key, "sessions", "rm", sid) is None
