"""Volumes through the real API: `toolserver up`, real HTTP, real Docker, loop-mounted filesystems (root).

One server serves the module; the last test crashes and restarts it to show that volumes outlive it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.serverproc import ServerProcess
from toolserver.client import Client

pytestmark = [
    pytest.mark.integration,
    pytest.mark.docker,
    pytest.mark.ray,
    pytest.mark.skipif(os.geteuid() != 0, reason="volumes are loop mounts: the server must run as root"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sandbox_image: str) -> Iterator[ServerProcess]:
    env = {
        "TOOLSERVER_POOL_SIZE": "1",
        "TOOLSERVER_SANDBOX_IMAGE": sandbox_image,
        "TOOLSERVER_MAX_VOLUME_MB": "64",
        "TOOLSERVER_MAX_VOLUMES_PER_NAMESPACE": "2",
    }
    home = tmp_path_factory.mktemp("tshome")
    proc = ServerProcess(home, env=env)
    proc.start()
    yield proc
    proc.stop()
    # Volumes stay mounted past the server by design; the test's own must not outlive the test.
    with open("/proc/self/mounts") as fh:
        mounted = [line.split()[1] for line in fh if str(home) in line.split()[1]]
    for point in mounted:
        subprocess.run(["umount", point], check=False)


@pytest.fixture(scope="module")
def keys(server: ServerProcess) -> dict[str, str]:
    with Client(server.url, server.admin_key) as admin:
        return {name: admin.keys.create(f"team-{name}", name).key for name in ("a", "b")}


def _http(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


@pytest.fixture(scope="module")
def a(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["a"]) as client:
        yield client


@pytest.fixture(scope="module")
def b(server: ServerProcess, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with _http(server, keys["b"]) as client:
        yield client


def _session(client: httpx.Client, *mounts: dict[str, object]) -> str:
    reply = client.post("/v1/sessions", json={"volumes": list(mounts)})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def _shell(client: httpx.Client, session: str, command: str) -> tuple[int | None, str]:
    reply = client.post(f"/v1/sessions/{session}/shell", json={"command": command, "timeout_s": 120})
    assert reply.status_code == 200, reply.text
    return reply.json()["exit_code"], reply.json()["output"]


def test_a_volume_keeps_its_data_after_the_session_and_its_size_holds(a: httpx.Client) -> None:
    made = a.post("/v1/volumes", json={"name": "data", "size_mb": 32})
    assert made.status_code == 201, made.text
    assert (made.json()["name"], made.json()["size_mb"], made.json()["mounted"]) == ("data", 32, True)
    writer = _session(a, {"name": "data", "path": "/workspace/data"})
    view = a.get(f"/v1/sessions/{writer}").json()
    assert view["volumes"] == [{"name": "data", "path": "/workspace/data", "read_only": False}]
    code, _ = _shell(a, writer, "echo kept > /workspace/data/note.txt")
    assert code == 0
    code, out = _shell(
        a, writer, "dd if=/dev/zero of=/workspace/data/fill bs=1M count=100 2>&1; df -m /workspace/data"
    )
    assert "No space left on device" in out, out
    size_mb = int(out.strip().splitlines()[-1].split()[1])
    assert 20 <= size_mb <= 32, out  # the volume's own filesystem: 32 MiB less ext4's own blocks
    _shell(a, writer, "rm /workspace/data/fill")
    used = a.get("/v1/volumes/data").json()
    assert used["used_bytes"] is not None and used["used_bytes"] < 8 * 1024 * 1024
    assert a.delete(f"/v1/sessions/{writer}").status_code == 204
    reader = _session(a, {"name": "data", "path": "/workspace/in", "read_only": True})
    assert _shell(a, reader, "cat /workspace/in/note.txt") == (0, "kept\n")


def test_read_only_in_many_read_write_in_one_and_no_delete_while_mounted(a: httpx.Client) -> None:
    first = _session(a, {"name": "data", "path": "/workspace/in", "read_only": True})
    second = _session(a, {"name": "data", "path": "/workspace/in", "read_only": True})
    for session in (first, second):
        assert _shell(a, session, "cat /workspace/in/note.txt")[1] == "kept\n"
        code, out = _shell(a, session, "touch /workspace/in/x 2>&1")
        assert code != 0 and "Read-only file system" in out, out
    writer = a.post("/v1/sessions", json={"volumes": [{"name": "data", "path": "/workspace/data"}]})
    assert writer.status_code == 409, writer.text
    busy = a.delete("/v1/volumes/data")
    assert busy.status_code == 409 and "mounted" in busy.json()["error"]["message"], busy.text


def test_volumes_are_the_namespaces_own_and_bad_requests_are_clear(a: httpx.Client, b: httpx.Client) -> None:
    assert b.get("/v1/volumes/data").status_code == 404
    assert b.get("/v1/volumes").json()["volumes"] == []
    mount = b.post("/v1/sessions", json={"volumes": [{"name": "data", "path": "/workspace/data"}]})
    assert mount.status_code == 422 and mount.json()["error"]["field"] == "volumes[0].name", mount.text
    assert b.delete("/v1/volumes/data").status_code == 404
    too_big = a.post("/v1/volumes", json={"name": "big", "size_mb": 65})
    assert too_big.status_code == 422 and too_big.json()["error"]["setting"] == "TOOLSERVER_MAX_VOLUME_MB"
    for path in ("/etc", "/workspace", "/workspace/../etc", "relative", "/workspace/a/../b"):
        bad = a.post("/v1/sessions", json={"volumes": [{"name": "data", "path": path, "read_only": True}]})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "volumes[0].path", (path, bad.text)
    assert a.post("/v1/volumes", json={"name": "../x", "size_mb": 8}).status_code == 422
    assert a.post("/v1/volumes", json={"name": "data", "size_mb": 8}).status_code == 409
    assert a.post("/v1/volumes", json={"name": "second", "size_mb": 8}).status_code == 201
    over = a.post("/v1/volumes", json={"name": "third", "size_mb": 8})
    assert over.status_code == 429, over.text


def test_volumes_outlive_a_server_crash(server: ServerProcess, keys: dict[str, str]) -> None:
    server.crash()
    server.start()
    with _http(server, keys["a"]) as again:
        names = {v["name"] for v in again.get("/v1/volumes").json()["volumes"]}
        assert names == {"data", "second"}
        assert again.get("/v1/volumes/data").json()["mounted"] is True
        for session in again.get("/v1/sessions").json()["sessions"]:
            assert again.delete(f"/v1/sessions/{session['id']}").status_code == 204
        reader = _session(again, {"name": "data", "path": "/workspace/in", "read_only": True})
        assert _shell(again, reader, "cat /workspace/in/note.txt") == (0, "kept\n")
        assert again.delete(f"/v1/sessions/{reader}").status_code == 204
        assert again.delete("/v1/volumes/data").status_code == 204
        assert again.get("/v1/volumes/data").status_code == 404
        assert again.delete("/v1/volumes/second").status_code == 204
