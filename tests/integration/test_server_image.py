"""The server image, built offline on the real engine and run the way deploy/README.md says: host network,
the host's Docker socket, the sandbox runtime directory at the same path inside as outside.

The first build takes about a minute (the dependency wheelhouse is downloaded once, then cached under
$TOOLSERVER_HOME/cache/wheelhouse); after a source change only the project's layer is rebuilt.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from sandbox.image import HASH_LABEL
from tests.integration.serverproc import free_port
from toolserver.serve.image import SERVER_IMAGE, build_server_image, server_image_status

pytestmark = [pytest.mark.integration, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[2]
API_KEY = "tsk_server_image_test"
TEST_LABEL = "toolserver.test"
STARTUP_S = 240.0  # Ray and Serve start inside the container; generous for a busy 2-core machine


def _progress_printer(config: pytest.Config) -> Callable[[str], None]:
    """Step lines of a (re)build straight to the terminal, past output capture: a first build takes a while."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is None or not (line.startswith(("[", "Step ", "built ")) or "up to date" in line):
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(f"  [server image] {line[:120]}")

    return progress


@pytest.fixture(scope="module")
def client(docker_engine: docker.DockerClient) -> docker.DockerClient:
    return docker_engine


@pytest.fixture(scope="module")
def server_image(client: docker.DockerClient, sandbox_image: str, pytestconfig: pytest.Config) -> str:
    """The server image, built unless up to date (the sandbox image is needed by the server it runs)."""
    progress = _progress_printer(pytestconfig)
    started = time.monotonic()
    image_id = build_server_image(SERVER_IMAGE, client=client, progress=progress)
    size = client.api.inspect_image(image_id)["Size"]
    progress(f"[done] in {time.monotonic() - started:.1f} s, {size / 1e6:.0f} MB")
    return SERVER_IMAGE


def _docker_socket() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    path = host.removeprefix("unix://")
    if not host.startswith("unix://") or not stat.S_ISSOCK(os.stat(path).st_mode):
        pytest.skip(f"the engine is not on a local unix socket ({host})")
    return path


def _dir_for_uid_1000(prefix: str) -> Path:
    """A short host directory the server (uid 1000 in the image) can write to."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # short: unix socket paths live below it
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    else:
        path.chmod(0o777)
    return path


@contextlib.contextmanager
def _server_container(
    client: docker.DockerClient,
    image: str,
    *,
    leftovers: list[str],
    entrypoint: str | None = None,
    command: list[str] | None = None,
    port: int | None = None,
    volumes: dict[str, dict[str, str]] | None = None,
) -> Iterator[tuple[Any, int, Path]]:
    """Run the server image as documented; on exit stop it (it removes its sandboxes) and clean up.

    Sandbox containers of its instance still there after the stop are removed and named in `leftovers`.
    """
    socket_path = _docker_socket()
    data, runtime = _dir_for_uid_1000("tsrv-data-"), _dir_for_uid_1000("tsrv-")
    port = port or free_port()
    container = None
    try:
        container = client.containers.run(
            image,
            command,
            entrypoint=entrypoint,
            detach=True,
            name=f"tsrv-test-{port}",
            labels={TEST_LABEL: "server-image"},
            init=True,  # reaps Ray's orphans and forwards `docker stop`'s SIGTERM
            network_mode="host",
            shm_size="1g",
            group_add=[str(os.stat(socket_path).st_gid)],
            environment={
                "TOOLSERVER_PORT": str(port),
                "TOOLSERVER_API_KEY": API_KEY,
                "TOOLSERVER_POOL_SIZE": "1",
                "TMPDIR": str(runtime),  # the sandboxes' directories: the same path on the host and inside
            },
            volumes={
                socket_path: {"bind": "/var/run/docker.sock", "mode": "rw"},
                str(data): {"bind": "/data", "mode": "rw"},
                str(runtime): {"bind": str(runtime), "mode": "rw"},
                **(volumes or {}),
            },
        )
        yield container, port, data
    finally:
        instance_file = data / "instance_id"
        instance = instance_file.read_text().strip() if instance_file.exists() else None
        if container is not None:
            with contextlib.suppress(docker.errors.APIError):
                container.stop(timeout=90)
        if instance:
            label = {"label": [f"toolserver.instance={instance}"]}
            for leftover in client.containers.list(all=True, filters=label):
                leftovers.append(leftover.name)
                with contextlib.suppress(docker.errors.NotFound):
                    leftover.remove(force=True)
        if container is not None:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


def _wait_healthy(container: Any, port: int, started_file: Path | None = None) -> dict[str, Any]:
    """Wait for /healthz, and for `started_file` if given.

    `toolserver up` writes server.json once start-up is complete. /healthz answers a little earlier, while
    Ray's own SIGTERM handler is still the one installed: a `docker stop` then kills the server without
    its cleanup (the next start reconciles), so the test waits for the file as well.
    """
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        container.reload()
        if container.status not in ("created", "running"):
            logs = container.logs(tail=60).decode(errors="replace")
            pytest.fail(f"the server container exited ({container.status}):\n{logs}")
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
            started = started_file is None or started_file.exists()
            if response.status_code == 200 and response.json().get("nodes") and started:
                return dict(response.json())
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    logs = container.logs(tail=60).decode(errors="replace")
    pytest.fail(f"/healthz did not answer 200 within {STARTUP_S:.0f} s:\n{logs}")


def _echo_in_a_new_session(port: int) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60) as http:
        created = http.post("/v1/sessions", json={})
        assert created.status_code == 201, created.text
        session = created.json()["id"]
        shell = http.post(f"/v1/sessions/{session}/shell", json={"command": "echo hi"}).json()
        assert shell["exit_code"] == 0 and shell["output"].strip() == "hi", shell
        # The kernel's ipc sockets belong to the sandbox's uid 1000: the server's uid must match.
        cell = http.post(f"/v1/sessions/{session}/python", json={"code": "print(6 * 7)"}).json()
        assert cell["status"] == "ok" and cell["stdout"].strip() == "42", cell


def test_second_build_is_skipped_quickly(client: docker.DockerClient, server_image: str) -> None:
    lines: list[str] = []
    started = time.monotonic()
    build_server_image(SERVER_IMAGE, client=client, progress=lines.append)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"up-to-date check took {elapsed:.2f} s"
    assert len(lines) == 1 and "up to date" in lines[0]
    status = server_image_status(SERVER_IMAGE, client=client)
    assert status["exists"] and status["hash_matches"]
    assert client.images.get(SERVER_IMAGE).labels[HASH_LABEL].startswith("sha256:")


def test_image_is_configured_as_documented(client: docker.DockerClient, server_image: str) -> None:
    config = client.api.inspect_image(server_image)["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["toolserver"]
    assert config["Cmd"] == ["up", "--host", "0.0.0.0", "--no-image-build"]
    assert "TOOLSERVER_HOME=/data" in config["Env"]
    script = "id -u; command -v docker dockerd || echo no-docker; toolserver --help >/dev/null && echo cli-ok"
    output = client.containers.run(
        server_image, ["-c", script], entrypoint="sh", remove=True, network_mode="none"
    )
    assert output.decode().split() == ["1000", "no-docker", "cli-ok"]


def test_containerized_server_drives_the_host_engine(client: docker.DockerClient, server_image: str) -> None:
    leftovers: list[str] = []
    with _server_container(client, server_image, leftovers=leftovers) as (container, port, data):
        health = _wait_healthy(container, port, started_file=data / "server.json")
        assert health["ray_nodes"] == 1
        _echo_in_a_new_session(port)
    assert leftovers == [], "the server left sandboxes behind on `docker stop`"


def test_serve_config_alone_brings_the_server_up(
    client: docker.DockerClient, server_image: str, tmp_path: Path
) -> None:
    """`serve run deploy/serve_config.yaml` in the image: the app builder starts every actor the app needs."""
    config = yaml.safe_load((REPO / "deploy" / "serve_config.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"][0]["args"].update(replicas=1, pool_size=1)
    (tmp_path / "serve_config.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "serve_config.yaml").chmod(0o644)
    tmp_path.chmod(0o755)
    leftovers: list[str] = []
    with _server_container(
        client,
        server_image,
        entrypoint="serve",
        command=["run", "/config/serve_config.yaml"],
        port=port,
        volumes={str(tmp_path): {"bind": "/config", "mode": "ro"}},
        leftovers=leftovers,
    ) as (container, _, _):
        _wait_healthy(container, port)
        _echo_in_a_new_session(port)
        stopped = container.exec_run(["python3", "-m", "toolserver.serve.builder", "stop"])
        assert stopped.exit_code == 0, stopped.output.decode(errors="replace")[-3000:]
    assert leftovers == [], "`python -m toolserver.serve.builder stop` left sandboxes behind"
