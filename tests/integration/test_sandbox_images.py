"""A session's image: only the operator's list, never pulled, and an image's VOLUME cannot escape the caps."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import docker
import docker.errors
import pytest
import pytest_asyncio

from foundation.errors import UserError
from sandbox.base import Limits, Runtime, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LIMITS = Limits(memory_mb=256, pids=64, disk_mb=32, tmp_mb=8)


@pytest.fixture(scope="module")
def volume_image(docker_engine: docker.DockerClient, sandbox_image: str) -> Iterator[str]:
    """The sandbox image with two `VOLUME` declarations, built locally (no registry needed)."""
    tag = f"toolserver-test-volume:{secrets.token_hex(4)}"
    dockerfile = f"FROM {sandbox_image}\nVOLUME /data\nVOLUME /var/cache/extra\n".encode()
    docker_engine.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, rm=True)
    yield tag
    docker_engine.images.remove(tag, force=True)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def backend(
    sandbox_image: str, volume_image: str, sandbox_runtime: Runtime
) -> AsyncIterator[DockerBackend]:
    config = SandboxConfig(
        image=sandbox_image,
        runtime=sandbox_runtime,
        allowed_images=(volume_image, "toolserver-test-absent:never"),
        instance_id=f"imgtest-{secrets.token_hex(4)}",
        node_id="n1",
        ready_timeout_s=30,
    )
    backend = DockerBackend(config)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_image_the_operator_did_not_list_is_refused(backend: DockerBackend) -> None:
    bystander = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-b"))
    try:
        for image in ("toolserver-sandbox:other", "docker.io/library/alpine:latest", "registry.local/x"):
            with pytest.raises(UserError) as refused:
                await backend.create(SandboxSpec(image=image, limits=LIMITS, owner="tenant-a"))
            assert refused.value.details["field"] == "image"
            assert "TOOLSERVER_ALLOWED_IMAGES" in refused.value.message
        assert (await bystander.shell("echo alive")).output.strip() == "alive"
    finally:
        await backend.destroy(bystander.info.session_id)


@pytest.mark.asyncio(loop_scope="session")
async def test_a_listed_image_missing_from_the_engine_is_not_pulled(
    backend: DockerBackend, docker_engine: docker.DockerClient
) -> None:
    started = time.monotonic()
    with pytest.raises(UserError) as refused:
        await backend.create(SandboxSpec(image="toolserver-test-absent:never", limits=LIMITS, owner="a"))
    assert time.monotonic() - started < 30  # a pull attempt against an unreachable registry would hang
    assert "never pull" in refused.value.message
    assert refused.value.details["field"] == "image"
    with pytest.raises(docker.errors.ImageNotFound):
        docker_engine.images.get("toolserver-test-absent:never")
    # Nothing is left of the failed create: no container, no host directory.
    leftovers = docker_engine.containers.list(
        all=True, filters={"label": f"toolserver.instance={backend.config.instance_id}"}
    )
    assert leftovers == []


@pytest.mark.asyncio(loop_scope="session")
async def test_an_images_volume_becomes_a_capped_tmpfs_and_nothing_survives_the_session(
    backend: DockerBackend, docker_engine: docker.DockerClient, volume_image: str
) -> None:
    volumes_before = {v.name for v in docker_engine.volumes.list()}
    sandbox = await backend.create(SandboxSpec(image=volume_image, limits=LIMITS, owner="tenant-a"))
    attrs = docker_engine.containers.get(sandbox.info.container_id).attrs
    assert [m for m in attrs["Mounts"] if m.get("Type") == "volume"] == []
    assert {"/data", "/var/cache/extra"} <= set(attrs["HostConfig"]["Tmpfs"])
    # Writing past the tmpfs size fails inside the sandbox instead of filling the engine's disk.
    done = await sandbox.shell("dd if=/dev/zero of=/data/fill bs=1M count=64 2>&1; df -m /data | tail -1")
    assert "No space left on device" in done.output
    assert (await sandbox.shell("stat -f -c %T /data")).output.strip() == "tmpfs"
    await backend.destroy(sandbox.info.session_id)
    assert {v.name for v in docker_engine.volumes.list()} <= volumes_before


@pytest.mark.asyncio(loop_scope="session")
async def test_core_dumps_are_off_and_a_single_file_is_capped(backend: DockerBackend) -> None:
    sandbox = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-a"))
    try:
        limits = await sandbox.shell("ulimit -c; ulimit -f")
        core, fsize_blocks = limits.output.split()
        assert core == "0"
        assert int(fsize_blocks) * 1024 == (max(LIMITS.disk_mb, LIMITS.tmp_mb) + 1) * 1024 * 1024
    finally:
        await backend.destroy(sandbox.info.session_id)
