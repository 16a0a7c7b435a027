"""An open network is the operator's choice, and even then sandboxes do not share a network with each other.

No test sends traffic: they read what the engine says of the containers and networks.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import docker
import docker.errors
import pytest
import pytest_asyncio

from sandbox.base import Limits, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import OPEN_NETWORK, DockerBackend
from sandbox.errors import LimitsExceeded, SandboxUnavailable

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LIMITS = Limits(memory_mb=256, pids=64, disk_mb=32, tmp_mb=8)


def _backend(sandbox_image: str, *, allow_network: bool) -> DockerBackend:
    return DockerBackend(
        SandboxConfig(
            image=sandbox_image,
            allow_network=allow_network,
            instance_id=f"nettest-{secrets.token_hex(4)}",
            node_id="n1",
            ready_timeout_s=30,
        )
    )


def _drop_open_network(engine: docker.DockerClient) -> None:
    try:
        engine.networks.get(OPEN_NETWORK).remove()
    except docker.errors.NotFound:
        pass


@pytest_asyncio.fixture(loop_scope="session")
async def open_backend(sandbox_image: str) -> AsyncIterator[DockerBackend]:
    backend = _backend(sandbox_image, allow_network=True)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_network_stays_closed_unless_the_operator_opens_it(sandbox_image: str) -> None:
    assert SandboxConfig().allow_network is False
    backend = _backend(sandbox_image, allow_network=False)
    try:
        with pytest.raises(LimitsExceeded) as refused:
            await backend.create(SandboxSpec(limits=LIMITS, network="bridge", owner="tenant-a"))
        assert refused.value.details["field"] == "network"
        assert "TOOLSERVER_ALLOW_OPEN_NETWORK" in refused.value.message
        closed = await backend.create(SandboxSpec(limits=LIMITS, owner="tenant-b"))
        assert (await closed.shell("echo alive")).output.strip() == "alive"
    finally:
        await backend.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_open_session_is_on_a_network_of_its_own_without_inter_container_traffic(
    open_backend: DockerBackend, docker_engine: docker.DockerClient
) -> None:
    opened = await open_backend.create(SandboxSpec(limits=LIMITS, network="bridge", owner="tenant-a"))
    closed = await open_backend.create(SandboxSpec(limits=LIMITS, owner="tenant-b"))
    attrs = docker_engine.containers.get(opened.info.container_id).attrs
    assert attrs["HostConfig"]["NetworkMode"] == OPEN_NETWORK
    assert set(attrs["NetworkSettings"]["Networks"]) == {OPEN_NETWORK}  # not Docker's default bridge
    network = docker_engine.networks.get(OPEN_NETWORK).attrs
    assert network["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    assert docker_engine.containers.get(closed.info.container_id).attrs["HostConfig"]["NetworkMode"] == "none"
    assert opened.info.network == "bridge"
    assert (await closed.shell("echo alive")).output.strip() == "alive"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_look_alike_network_with_inter_container_traffic_is_refused(
    open_backend: DockerBackend, docker_engine: docker.DockerClient
) -> None:
    for sandbox in await open_backend.list():
        await open_backend.destroy(sandbox.session_id)
    _drop_open_network(docker_engine)
    docker_engine.networks.create(OPEN_NETWORK, driver="bridge")  # inter-container traffic on
    try:
        with pytest.raises(SandboxUnavailable) as refused:
            await open_backend.create(SandboxSpec(limits=LIMITS, network="bridge", owner="tenant-a"))
        assert "inter-container" in refused.value.message
    finally:
        _drop_open_network(docker_engine)
    reopened = await open_backend.create(SandboxSpec(limits=LIMITS, network="bridge", owner="tenant-a"))
    assert docker_engine.containers.get(reopened.info.container_id).attrs["HostConfig"]["NetworkMode"] == (
        OPEN_NETWORK
    )
    await open_backend.destroy(reopened.info.session_id)
