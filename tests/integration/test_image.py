"""The real sandbox image, built (or reused) on the real Docker engine and run the way sandboxes run."""

from __future__ import annotations

import time
from typing import Any

import docker
import pytest

from sandbox.config import DEFAULT_IMAGE
from sandbox.image import GUEST_DIR, HASH_LABEL, build_image, image_status

pytestmark = [pytest.mark.integration, pytest.mark.docker]

# How the sandbox backend starts containers: read-only root, tmpfs for the writable places, no network.
LOCKED_DOWN: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,size=256m", "/workspace": "rw,size=256m,uid=1000,gid=1000"},
    "network_mode": "none",
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}


@pytest.fixture(scope="module")
def client(docker_engine: docker.DockerClient) -> docker.DockerClient:
    return docker_engine


@pytest.fixture(scope="module")
def image_id(client: docker.DockerClient, sandbox_image: str) -> str:
    """The id of the default image, which `sandbox_image` built unless it was up to date."""
    assert sandbox_image == DEFAULT_IMAGE
    return str(client.images.get(DEFAULT_IMAGE).id)


def _run(client: docker.DockerClient, command: list[str], **options: Any) -> str:
    output = client.containers.run(DEFAULT_IMAGE, command, remove=True, **options)
    return bytes(output).decode().strip()


def test_second_build_is_skipped_quickly(client: docker.DockerClient, image_id: str) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = build_image(DEFAULT_IMAGE, client=client, progress=lines.append)
    elapsed = time.monotonic() - started
    assert again == image_id
    assert elapsed < 2.0, f"up-to-date check took {elapsed:.2f} s"
    assert len(lines) == 1 and "up to date" in lines[0]


def test_status_reports_the_current_image(client: docker.DockerClient, image_id: str) -> None:
    status = image_status(DEFAULT_IMAGE, client=client)
    assert status["exists"] and status["hash_matches"]
    assert status["id"] == image_id
    assert status["size"] > 0
    assert client.images.get(DEFAULT_IMAGE).labels[HASH_LABEL].startswith("sha256:")


def test_image_config_matches_the_sandbox_contract(client: docker.DockerClient, image_id: str) -> None:
    config = client.api.inspect_image(image_id)["Config"]
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/workspace"
    assert config["Cmd"] == [
        "python3",
        "/opt/toolserver/sbxd.py",
        "--dir",
        "/sbx",
        "--workspace",
        "/workspace",
    ]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["HOME"] == "/workspace"
    assert env["MPLBACKEND"] == "Agg"
    assert env["MPLCONFIGDIR"] == "/tmp/.mpl"
    assert env["IPYTHONDIR"] == "/tmp/.ipython"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["TERM"] == "dumb" and env["PAGER"] == "cat"


def test_container_runs_as_uid_1000_not_root(client: docker.DockerClient, image_id: str) -> None:
    assert _run(client, ["id", "-u"], **LOCKED_DOWN) == "1000"
    assert _run(client, ["id", "-g"], **LOCKED_DOWN) == "1000"
    assert _run(client, ["sh", "-c", 'echo "$HOME $(pwd)"'], **LOCKED_DOWN) == "/workspace /workspace"


def test_python_and_shell_tools_are_on_path(client: docker.DockerClient, image_id: str) -> None:
    assert _run(client, ["python", "--version"], **LOCKED_DOWN).startswith("Python 3.")
    assert _run(client, ["bash", "-c", "ps -o comm= -p $$; true"], **LOCKED_DOWN) == "bash"


def test_scientific_stack_imports_with_a_read_only_root(client: docker.DockerClient, image_id: str) -> None:
    script = (
        "import numpy, pandas, matplotlib, ipykernel\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot(numpy.arange(3)); plt.savefig('/workspace/plot.png')\n"
        "print(pandas.DataFrame({'a': [1, 2]}).a.sum(), matplotlib.get_backend().lower())\n"
    )
    assert _run(client, ["python3", "-c", script], user="1000:1000", **LOCKED_DOWN) == "3 agg"


def test_root_filesystem_is_not_writable_but_workspace_and_tmp_are(
    client: docker.DockerClient, image_id: str
) -> None:
    script = "touch /workspace/a /tmp/b && ! touch /opt/toolserver/c 2>/dev/null && echo ok"
    assert _run(client, ["sh", "-c", script], **LOCKED_DOWN) == "ok"


def test_no_network_inside(client: docker.DockerClient, image_id: str) -> None:
    assert _run(client, ["sh", "-c", "ls /sys/class/net"], **LOCKED_DOWN) == "lo"


def test_wheels_are_not_left_in_the_image(client: docker.DockerClient, image_id: str) -> None:
    found = _run(
        client, ["sh", "-c", "find / -xdev -name '*.whl' 2>/dev/null | head -5; ls -d /wheels 2>&1; true"]
    )
    assert found.endswith("No such file or directory")
    assert ".whl" not in found


def test_guest_files_are_copied_to_opt_toolserver(client: docker.DockerClient, image_id: str) -> None:
    for source in sorted(GUEST_DIR.glob("*.py")):
        inside = client.containers.run(DEFAULT_IMAGE, ["cat", f"/opt/toolserver/{source.name}"], remove=True)
        assert bytes(inside) == source.read_bytes(), source.name


def test_guest_daemon_is_present(client: docker.DockerClient, image_id: str) -> None:
    if not (GUEST_DIR / "sbxd.py").exists():
        pytest.fail("sandbox/_guest/sbxd.py does not exist, so the image has no guest daemon")
    assert _run(client, ["sh", "-c", "test -r /opt/toolserver/sbxd.py && echo present"], **LOCKED_DOWN) == (
        "present"
    )
