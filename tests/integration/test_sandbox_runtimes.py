"""Each session runs under the runtime it was meant for, on the real engine: runc on the host kernel, runsc on
gVisor's; the warm pool, re-attach and the refusals keep to it."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator

import docker
import pytest
import pytest_asyncio

from sandbox import _labels
from sandbox.base import Runtime, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend, DockerSandbox
from sandbox.errors import LimitsExceeded, RuntimeUnavailable
from sandbox.manager import SandboxManager

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.asyncio(loop_scope="session")]


def _config(sandbox_image: str, **overrides: object) -> SandboxConfig:
    options: dict[str, object] = {
        "image": sandbox_image,
        "instance_id": f"rttest-{secrets.token_hex(4)}",
        "node_id": "n1",
        "ready_timeout_s": 30,
        "pool_size": 0,
        "runtime": "runc",
        "allowed_runtimes": ("runc", "runsc"),
    }
    return SandboxConfig(**(options | overrides))  # type: ignore[arg-type]


def _cleanup(engine: docker.DockerClient, config: SandboxConfig) -> None:
    for container in engine.containers.list(all=True, filters=_labels.instance_filter(config.instance_id)):
        container.remove(force=True)
    shutil.rmtree(os.path.join(config.runtime_dir, config.instance_id), ignore_errors=True)


async def assert_runs_under(engine: docker.DockerClient, sandbox: DockerSandbox, runtime: Runtime) -> None:
    """The engine says `runtime`, and so does the kernel the sandbox's code meets."""
    attrs = engine.containers.get(sandbox.info.container_id).attrs
    assert attrs["HostConfig"]["Runtime"] == runtime, attrs["HostConfig"]["Runtime"]
    assert sandbox.info.runtime == runtime
    seen = await sandbox.shell("cat /proc/version; dmesg 2>&1 | head -3", timeout_s=15)
    with open("/proc/version") as fh:
        host_kernel = fh.read().strip()
    if runtime == "runsc":
        assert "gVisor" in seen.output and host_kernel not in seen.output, seen.output
    else:
        assert host_kernel in seen.output and "gVisor" not in seen.output, seen.output


@pytest_asyncio.fixture(loop_scope="session")
async def backend(docker_engine: docker.DockerClient, sandbox_image: str) -> AsyncIterator[DockerBackend]:
    backend = DockerBackend(_config(sandbox_image))
    try:
        yield backend
    finally:
        await backend.close()
        _cleanup(docker_engine, backend.config)


async def test_a_session_runs_under_the_runtime_it_asked_for(
    docker_engine: docker.DockerClient, backend: DockerBackend, sandbox_runtime: Runtime
) -> None:
    sandbox = await backend.create(SandboxSpec(runtime=sandbox_runtime))
    await assert_runs_under(docker_engine, sandbox, sandbox_runtime)
    cell = await sandbox.python("import platform; platform.release()")
    assert cell.status == "ok", cell


async def test_the_server_default_runtime_applies_to_sessions_that_name_none(
    docker_engine: docker.DockerClient, sandbox_image: str, sandbox_runtime: Runtime
) -> None:
    backend = DockerBackend(_config(sandbox_image, runtime=sandbox_runtime, allowed_runtimes=()))
    try:
        await assert_runs_under(docker_engine, await backend.create(SandboxSpec()), sandbox_runtime)
    finally:
        await backend.close()
        _cleanup(docker_engine, backend.config)


async def test_the_warm_pool_hands_out_each_runtime_ready_and_reattach_keeps_it(
    docker_engine: docker.DockerClient, sandbox_image: str
) -> None:
    config = _config(sandbox_image, pool_size=1)
    manager = SandboxManager(config)
    try:
        await manager.start()
        await manager.pool.wait_full(120)
        assert manager.pool.ready_by_runtime() == {"runc": 1, "runsc": 1}
        stats = await manager.stats()
        assert {"runc", "runsc"} <= set(stats["runtimes"]["engine"])
        started = time.monotonic()
        gvisor = await manager.create(SandboxSpec(runtime="runsc"))
        acquire_s = time.monotonic() - started
        assert acquire_s < 1.0, f"a warm runsc sandbox took {acquire_s:.2f} s to hand out"
        sandbox = await manager.backend.get(gvisor.session_id)
        await assert_runs_under(docker_engine, sandbox, "runsc")  # type: ignore[arg-type]
        await manager.shell(gvisor.session_id, "echo kept > /workspace/state")

        # A new server instance of the same node finds the container again, with its runtime.
        await manager.pool.close()  # the old server stops: no refill races the new one's clean-up
        await sandbox.close()
        restarted = DockerBackend(config)
        report = await restarted.reconcile({gvisor.session_id})
        assert gvisor.session_id in report["attached"]
        again = await restarted.get(gvisor.session_id)
        assert again.info.runtime == "runsc"
        assert (await again.read_file("state")) == b"kept\n"
        restarted._sandboxes.clear()  # the manager below removes the containers
    finally:
        await manager.shutdown()
        _cleanup(docker_engine, config)


async def test_a_runtime_the_engine_lacks_is_a_clear_error(backend: DockerBackend) -> None:
    with pytest.raises(RuntimeUnavailable) as missing:
        backend.engine._runtimes.require(backend.client, "kata", "n1")  # type: ignore[arg-type]
    assert "'kata'" in missing.value.message and "runsc" in missing.value.message
    assert "scripts/setup.sh" in missing.value.message


async def test_runsc_sessions_are_refused_an_open_network(sandbox_image: str) -> None:
    config = _config(sandbox_image, allow_network=True)
    with pytest.raises(LimitsExceeded) as refused:
        config.check_spec(SandboxSpec(runtime="runsc", network="bridge"))
    assert refused.value.details["field"] == "network"
    config.check_spec(SandboxSpec(runtime="runc", network="bridge"))
