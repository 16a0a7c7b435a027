"""The session surface is written once: SessionOps mirrors SandboxOps, and every implementation has its signatures.

mypy proves that the implementations satisfy the Protocols (sandbox/manager.py, toolserver/nodes/local.py and
ray_actors.py); this checks what mypy lets differ: parameter names and defaults.
"""

from __future__ import annotations

import inspect

import pytest

from sandbox.base import SandboxOps, SessionOps
from sandbox.docker import DockerSandbox
from sandbox.fake import FakeSandbox
from sandbox.manager import SandboxManager
from sandbox.ports import SessionPorts
from sandbox.processes import SessionProcesses
from sandbox.streams import SessionStreams
from toolserver.nodes.base import NodeClient
from toolserver.nodes.ray_actors import RayNodeClient, SandboxNodeActor
from toolserver.service.session_sandbox import SessionSandbox

OPERATIONS = sorted(SandboxOps.__abstractmethods__)


def _parameters(function: object) -> list[tuple[str, object, object]]:
    # Ray adds `_ray_trace_ctx` to a class's methods once it has made an actor class of it in this process.
    return [
        (p.name, p.default, p.annotation)
        for p in inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        if not p.name.startswith("_ray")
    ]


def test_the_operations_are_the_six_of_a_session() -> None:
    assert OPERATIONS == ["list_files", "python", "read_file", "restart_python", "shell", "write_file"]


@pytest.mark.parametrize("name", OPERATIONS)
def test_session_ops_take_the_session_first_then_the_same_arguments(name: str) -> None:
    one, by_id = getattr(SandboxOps, name), getattr(SessionOps, name)
    self_, *rest = _parameters(one)
    assert _parameters(by_id) == [self_, ("session_id", inspect.Parameter.empty, "str"), *rest]
    assert inspect.signature(by_id).return_annotation == inspect.signature(one).return_annotation


@pytest.mark.parametrize("implementation", [FakeSandbox, DockerSandbox, SessionSandbox])
@pytest.mark.parametrize("name", OPERATIONS)
def test_every_sandbox_has_the_signatures_of_sandbox_ops(implementation: type, name: str) -> None:
    assert _parameters(getattr(implementation, name)) == _parameters(getattr(SandboxOps, name))


NODE_METHODS = sorted(NodeClient.__abstractmethods__)


def test_a_node_client_is_session_ops_processes_and_the_lifecycle() -> None:
    assert set(NODE_METHODS) == set(SessionOps.__abstractmethods__) | set(
        SessionProcesses.__abstractmethods__
    ) | set(SessionStreams.__abstractmethods__) | set(SessionPorts.__abstractmethods__) | {
        "create",
        "get",
        "destroy",
        "egress",
        "sessions",
        "stats",
        "volume_create",
        "volume_delete",
        "volume_info",
        "pause",  # pause: a node pauses and resumes its sessions
        "resume",
        "snapshot_create",  # snapshots: and keeps their files, to fork from
        "snapshot_delete",
        "create_from_snapshot",
    }


@pytest.mark.parametrize("implementation", [SandboxManager, SandboxNodeActor, RayNodeClient])
@pytest.mark.parametrize("name", NODE_METHODS)
def test_every_node_client_has_the_signatures_of_node_client(implementation: type, name: str) -> None:
    assert _parameters(getattr(implementation, name)) == _parameters(getattr(NodeClient, name))
