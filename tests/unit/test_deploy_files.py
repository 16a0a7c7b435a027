"""The deployment files say what the docs say, and the tools that read them accept them (no Docker, no Ray)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from foundation.errors import UserError
from toolserver.serve import image as server_image
from toolserver.serve.builder import _parse_args

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RAY_NODES = ("ray-head", "ray-worker-1", "ray-worker-2")


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose` (Debian's 1.29), whichever answers."""
    if shutil.which("docker"):
        done = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if done.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _ray_container(pod_template: dict[str, Any]) -> dict[str, Any]:
    return dict(pod_template["spec"]["containers"][0])  # KubeRay takes the first container for Ray


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value", entry.get("valueFrom")) for entry in container["env"]}


# -- compose ------------------------------------------------------------------------------------------


def test_compose_file_validates_with_the_compose_tool() -> None:
    command = _compose_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs `docker compose` or `docker-compose` (scripts/setup.sh installs it)")
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    done = subprocess.run(
        [*command, "-f", str(DEPLOY / "compose.yaml"), "config"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) >= {*RAY_NODES, "postgres"}


def test_compose_ray_nodes_mount_the_socket_and_a_same_path_sandbox_dir() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    sandbox_dirs = set()
    for name in RAY_NODES:
        node = services[name]
        mounts = dict(volume.split(":", 1) for volume in node["volumes"])
        assert mounts["/var/run/docker.sock"] == "/var/run/docker.sock"
        tmpdir = node["environment"]["TMPDIR"]
        assert mounts[tmpdir] == tmpdir, f"{name}: the sandbox dir must have the same path inside"
        assert len(tmpdir) <= 43, "unix socket paths below it are limited to 107 bytes"
        sandbox_dirs.add(tmpdir)
        assert node["init"] is True
        assert node["environment"]["RAY_AUTH_MODE"] == "token"
    assert len(sandbox_dirs) == len(RAY_NODES), "each node has its own sandbox dir"
    assert set(services["sandbox-dirs"]["command"]) == sandbox_dirs
    head = services["ray-head"]
    assert "toolserver up --address auto" in head["command"][0]
    assert "postgresql://" in head["environment"]["TOOLSERVER_DATABASE_URL"]
    assert {"ray-worker-1", "ray-worker-2"} <= set(head["depends_on"]), "the head must stop first"


# -- Serve config -----------------------------------------------------------------------------------------


def _check_serve_config(config: dict[str, Any]) -> None:
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "toolserver.serve.builder:app_builder"
    assert app.route_prefix == "/"
    settings, instance_id = _parse_args(dict(app.args))  # every arg is a setting the builder accepts
    assert settings.replicas == app.args["replicas"] and instance_id.startswith("ts")


def test_serve_config_parses_into_rays_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLSERVER_HOME", str(tmp_path))
    config = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())
    _check_serve_config(config)
    assert config["http_options"] == {"host": "0.0.0.0", "port": 8000}


def test_builder_refuses_unknown_args() -> None:
    with pytest.raises(UserError, match="unknown application args: pool"):
        _parse_args({"pool": 3})


# -- KubeRay --------------------------------------------------------------------------------------------


def test_rayservice_has_head_workers_secrets_and_the_same_serve_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOOLSERVER_HOME", str(tmp_path))
    manifest = yaml.safe_load((DEPLOY / "k8s" / "rayservice.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    spec = manifest["spec"]
    inlined = yaml.safe_load(spec["serveConfigV2"])
    _check_serve_config(inlined)
    standalone = yaml.safe_load((DEPLOY / "serve_config.yaml").read_text())
    assert inlined["applications"] == standalone["applications"]

    cluster = spec["rayClusterConfig"]
    assert cluster["authOptions"] == {"mode": "token"}
    pods = [cluster["headGroupSpec"]["template"]] + [
        group["template"] for group in cluster["workerGroupSpecs"]
    ]
    assert cluster["workerGroupSpecs"][0]["replicas"] >= 2
    for pod in pods:
        ray_container = _ray_container(pod)
        env = _env(ray_container)
        assert env["TOOLSERVER_DATABASE_URL"] == {
            "secretKeyRef": {"name": "toolserver", "key": "database-url"}
        }
        assert env["TOOLSERVER_API_KEY"]["secretKeyRef"]["name"] == "toolserver"
        assert ray_container["securityContext"]["runAsUser"] == 1000
        (engine,) = pod["spec"]["initContainers"]  # the DinD native sidecar
        assert engine["restartPolicy"] == "Always"
        ray_mounts = {m["name"]: m["mountPath"] for m in ray_container["volumeMounts"]}
        engine_mounts = {m["name"]: m["mountPath"] for m in engine["volumeMounts"]}
        assert ray_mounts["sandboxes"] == engine_mounts["sandboxes"] == env["TMPDIR"]
        assert env["DOCKER_HOST"] == f"unix://{engine_mounts['dind-socket']}/docker.sock"


# -- Dockerfile ------------------------------------------------------------------------------------------


def _instructions(dockerfile: str) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in dockerfile.splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " " if raw.endswith("\\") else raw.strip()
        if not raw.endswith("\\"):
            lines.append(current)
            current = ""
    return lines


def test_dockerfile_lines_are_what_the_docs_say() -> None:
    instructions = _instructions((REPO / "Dockerfile").read_text())
    args = [line for line in instructions if line.startswith("ARG ")]
    users = [line for line in instructions if line.startswith("USER ")]
    entrypoint = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    cmd = [line for line in instructions if line.startswith("CMD ")]
    assert args == ["ARG BASE_IMAGE=python:3.12-slim"]
    assert users == ["USER 1000:1000"]
    assert json.loads(entrypoint[0].removeprefix("ENTRYPOINT ")) == ["toolserver"]
    assert json.loads(cmd[0].removeprefix("CMD ")) == ["up", "--host", "0.0.0.0", "--no-image-build"]
    assert any("TOOLSERVER_HOME=/data" in line for line in instructions if line.startswith("ENV "))
    docs = (DEPLOY / "README.md").read_text()
    for line in [*args, *users, *entrypoint, *cmd]:
        assert f"`{line}`" in docs, f"deploy/README.md does not show {line}"


def test_dockerfile_installs_only_from_the_wheelhouse() -> None:
    runs = [line for line in _instructions((REPO / "Dockerfile").read_text()) if line.startswith("RUN ")]
    installs = [line for line in runs if "pip install" in line]
    assert len(installs) == 2 and all("--no-index" in line for line in installs)
    assert not any("apt-get" in line or "curl " in line or "docker.io" in line for line in runs)


# -- the server image's inputs ---------------------------------------------------------------------------


def test_inputs_hash_follows_the_source_but_not_the_readme(tmp_path: Path) -> None:
    source = server_image._read_source(REPO)
    assert {"Dockerfile", "pyproject.toml", "sandbox/_guest/sbxd.py", "toolserver/serve/builder.py"} <= set(
        source
    )
    assert not any("__pycache__" in name for name in source)
    first = server_image._inputs_hash(source, "sha256:base")
    assert server_image._inputs_hash({**source, "README.md": b"other"}, "sha256:base") == first
    changed = {**source, "toolserver/serve/builder.py": b"# changed"}
    assert server_image._inputs_hash(changed, "sha256:base") != first
    assert server_image._inputs_hash(source, "sha256:other-base") != first


def test_wheel_requirements_keep_the_postgres_extra_only(tmp_path: Path) -> None:
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            "Name: toolserver",
            "Requires-Dist: ray[serve]>=2.9",
            'Requires-Dist: tomli>=2; python_version < "3.11"',
            'Requires-Dist: psycopg2-binary>=2.9; extra == "postgres"',
            'Requires-Dist: pytest>=8; extra == "dev"',
            'Requires-Dist: psycopg2-binary>=2.9; extra == "dev"',
        ]
    )
    wheel = tmp_path / "toolserver-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("toolserver-0.1.0.dist-info/METADATA", metadata + "\n")
    assert server_image._wheel_requirements(wheel, ("postgres",)) == [
        "ray[serve]>=2.9",
        'tomli>=2; python_version < "3.11"',
        "psycopg2-binary>=2.9",
    ]
