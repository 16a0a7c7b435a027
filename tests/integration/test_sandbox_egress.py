"""Sandbox egress by allow-list, against a real container and the node's real proxy.

The only upstream is a package index the test serves on 127.0.0.2 (loopback: Linux routes all of 127/8 to
`lo`), which the operator's setting opens. A sandbox with network "egress" owns nothing but its own loopback, so
every other connection attempted from inside it fails before any packet leaves the container.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import docker
import pytest
import pytest_asyncio

from foundation.errors import UserError
from sandbox.base import Limits, Runtime, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.docker import DockerBackend, DockerSandbox
from sandbox.egress import EgressLimits
from sandbox.errors import LimitsExceeded
from tests.integration.pkgindex import INDEX_HOST
from tests.integration.pkgindex import package_index as serve_index
from toolserver.outbound.egress import EgressPolicy

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LIMITS = Limits(memory_mb=256, pids=96, disk_mb=64, tmp_mb=32)


@pytest.fixture(scope="module")
def package_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a simple index with one wheel, `demo_pkg`, and a /hello page."""
    with serve_index(tmp_path_factory.mktemp("index")) as where:
        yield where


def _backend(image: str, operator_allow: str, runtime: Runtime = "runc", **limits: object) -> DockerBackend:
    config = SandboxConfig(
        image=image,
        runtime=runtime,
        instance_id=f"egress-{secrets.token_hex(4)}",
        node_id="n1",
        ready_timeout_s=40,
        egress=EgressLimits(operator_allow=operator_allow, **limits),  # type: ignore[arg-type]
    )
    return DockerBackend(config, egress_check=EgressPolicy.parse(operator_allow))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def egress_sandbox(
    sandbox_image: str, package_index: str, sandbox_runtime: Runtime
) -> AsyncIterator[DockerSandbox]:
    backend = _backend(sandbox_image, package_index, sandbox_runtime, max_connections=8)
    try:
        sandbox = await backend.create(
            SandboxSpec(limits=LIMITS, network="egress", owner="tenant-a", egress=(package_index, "pypi.org"))
        )
        sandbox.backend = backend  # type: ignore[attr-defined]
        yield sandbox
    finally:
        await backend.close()


def _report(sandbox: DockerSandbox) -> dict[str, object]:
    return sandbox.backend.egress_report(sandbox.info.session_id)  # type: ignore[attr-defined, no-any-return]


PY_GET = """
import sys, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=20).read().decode().strip())
except Exception as exc:
    print("FAILED", type(exc).__name__, getattr(exc, "code", ""), str(exc)[:300])
"""


async def _get(sandbox: DockerSandbox, url: str, env: str = "") -> str:
    await sandbox.write_file("get.py", PY_GET.encode())
    result = await sandbox.shell(f"{env} python3 get.py {url}", timeout_s=60)
    return result.output.strip()


@pytest.mark.asyncio(loop_scope="module")
async def test_urllib_and_pip_reach_an_allowed_index_through_the_proxy(
    egress_sandbox: DockerSandbox, package_index: str, docker_engine: docker.DockerClient
) -> None:
    attrs = docker_engine.containers.get(egress_sandbox.info.container_id).attrs
    assert attrs["HostConfig"]["NetworkMode"] == "none"  # the container's network is never opened
    assert await _get(egress_sandbox, f"http://{package_index}/hello") == "hello from the index"
    pip = await egress_sandbox.shell(
        f"pip download --no-deps --no-cache-dir -d /tmp/wheels --index-url http://{package_index}/simple"
        f" --trusted-host {INDEX_HOST} demo_pkg 2>&1; ls /tmp/wheels",
        timeout_s=120,
    )
    assert "demo_pkg-1.0-py3-none-any.whl" in pip.output, pip.output
    report = _report(egress_sandbox)
    hosts = {(c["host"], c["port"], c["allowed"]) for c in report["connections"]}  # type: ignore[attr-defined, index]
    host, port = package_index.split(":")
    assert (host, int(port), True) in hosts
    assert report["rules"] == [package_index, "pypi.org"]


@pytest.mark.asyncio(loop_scope="module")
async def test_everything_else_fails_from_inside_dns_included(
    egress_sandbox: DockerSandbox, package_index: str
) -> None:
    host, port = package_index.split(":")
    other_port = int(port) + 1 if int(port) < 65535 else int(port) - 1
    # Off the list: the proxy answers 403 and journals it.
    assert "FAILED HTTPError 403" in await _get(egress_sandbox, f"http://{host}:{other_port}/hello")
    assert "FAILED HTTPError 403" in await _get(egress_sandbox, f"http://127.0.0.3:{port}/hello")
    probe = """
import socket, sys
out = []
for target in [(sys.argv[1], int(sys.argv[2])), ("1.1.1.1", 53)]:
    try:
        socket.create_connection(target, timeout=5).close(); out.append("connected")
    except OSError as exc:
        out.append(type(exc).__name__)
try:
    socket.getaddrinfo("pypi.org", 443); out.append("resolved")
except OSError as exc:
    out.append("no-dns")
print(" ".join(out))
"""
    await egress_sandbox.write_file("probe.py", probe.encode())
    direct = (await egress_sandbox.shell(f"python3 probe.py {host} {port}", timeout_s=60)).output.split()
    assert "connected" not in direct and "resolved" not in direct and direct[-1] == "no-dns", direct
    denied = [c for c in _report(egress_sandbox)["connections"] if not c["allowed"]]  # type: ignore[attr-defined]
    assert {(c["host"], c["port"]) for c in denied} >= {(host, other_port), ("127.0.0.3", int(port))}
    assert all("allow-list" in c["reason"] for c in denied)


@pytest.mark.asyncio(loop_scope="module")
async def test_an_allowed_name_that_resolves_inward_is_refused(
    sandbox_image: str, package_index: str, sandbox_runtime: Runtime
) -> None:
    _, port = package_index.split(":")
    backend = _backend(
        sandbox_image, "", sandbox_runtime
    )  # the operator opened nothing: loopback is never public
    try:
        sandbox = await backend.create(
            SandboxSpec(limits=LIMITS, network="egress", owner="tenant-a", egress=(f"localhost:{port}",))
        )
        answer = await _get(sandbox, f"http://localhost:{port}/hello", env="no_proxy= NO_PROXY=")
        assert "FAILED HTTPError 403" in answer, answer
        report = backend.egress_report(sandbox.info.session_id)
        assert "not a public address" in report["connections"][-1]["reason"]
    finally:
        await backend.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_connection_cap_holds_and_the_sandbox_keeps_working(
    egress_sandbox: DockerSandbox, package_index: str
) -> None:
    flood = """
import socket, time
held = []
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=5); held.append(s)
time.sleep(2)  # past the 0.5 s in which the proxy answers those over the cap
answers = []
probe = socket.create_connection(("127.0.0.1", 3128), timeout=5)
probe.sendall(b"CONNECT pypi.org:443 HTTP/1.1\\r\\n\\r\\n")
print(probe.recv(200).split(b"\\r\\n")[0].decode())
"""
    await egress_sandbox.write_file("flood.py", flood.encode())
    over = await egress_sandbox.shell("python3 flood.py", timeout_s=60)
    assert "429" in over.output, over.output
    assert await _get(egress_sandbox, f"http://{package_index}/hello") == "hello from the index"


def test_the_allow_list_is_checked_at_create() -> None:
    config = SandboxConfig(egress=EgressLimits(maximum=("pypi.org", "*.pythonhosted.org")))
    config.check_spec(SandboxSpec(network="egress", egress=("pypi.org", "files.pythonhosted.org")))
    with pytest.raises(LimitsExceeded) as beyond:
        config.check_spec(SandboxSpec(network="egress", egress=("pypi.org", "evil.example")))
    assert beyond.value.details["field"] == "network.egress[1]"
    assert "TOOLSERVER_SANDBOX_EGRESS_MAX" in beyond.value.message
    with pytest.raises(UserError) as bad:
        config.check_spec(SandboxSpec(network="egress", egress=("pypi.org", "http://x.org/")))
    assert bad.value.details["field"] == "network.egress[1]"
    with pytest.raises(UserError) as empty:
        config.check_spec(SandboxSpec(network="egress"))
    assert "TOOLSERVER_SANDBOX_EGRESS_DEFAULT" in empty.value.message
    runsc = SandboxConfig(allowed_runtimes=("runsc",), allow_network=True)
    runsc.check_spec(SandboxSpec(network="egress", egress=("pypi.org",), runtime="runsc"))
    with pytest.raises(LimitsExceeded):  # gVisor runs with --network=none: no open network
        runsc.check_spec(SandboxSpec(network="bridge", runtime="runsc"))
    defaulted = SandboxConfig(egress=EgressLimits(default=("pypi.org",)))
    assert [str(r) for r in defaulted.egress_rules(SandboxSpec(network="egress"))] == ["pypi.org"]
