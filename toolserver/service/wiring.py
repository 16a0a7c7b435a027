"""The server's services wired together over one database and one node directory.

The HTTP app, the run scheduler's actor and the environment center actor all start from `build_services`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_core.memory import AsyncMemory, MemoryService, SqlMemoryStore
from registry import (
    AgentStore,
    AuditStore,
    Database,
    HumanRequestStore,
    KeyStore,
    RunStore,
    SecretStore,
    SessionStore,
    ToolStore,
    VolumeStore,
)
from registry.snapshots import SnapshotStore  # snapshots
from toolserver import __version__
from toolserver.config import Settings
from toolserver.http.auth import Authenticator, secrets_box
from toolserver.http.metrics import Metrics
from toolserver.nodes.base import NodeDirectory
from toolserver.runs.scheduler import RunScheduler
from toolserver.service.agents import AgentService
from toolserver.service.environment_tools import EnvironmentTools
from toolserver.service.environments import EnvironmentManager
from toolserver.service.sessions import SessionService
from toolserver.service.tools import ToolService
from toolserver.service.volumes import VolumeService
from toolserver.tools.base import ToolRunner
from toolserver.tools.http import HttpToolRunner
from toolserver.tools.mcp import McpToolRunner
from toolserver.tools.python import PythonToolRunner

__all__ = ["Services", "build_services"]


@dataclass
class Services:
    """Everything a request handler reaches: stores, services, auth, metrics."""

    settings: Settings
    db: Database
    nodes: NodeDirectory
    keys: KeyStore
    secrets: SecretStore
    audit: AuditStore
    auth: Authenticator
    sessions: SessionService
    tools: ToolService
    agents: AgentService
    memory: AsyncMemory
    environments: Any
    volumes: VolumeService | None = None
    metrics: Metrics = field(default_factory=Metrics)
    version: str = __version__


def build_services(
    settings: Settings,
    db: Database,
    nodes: NodeDirectory,
    extra_runners: dict[str, ToolRunner] | None = None,
    scheduler: Any = None,
    environments: Any = None,
) -> Services:
    """Wire the stores and services over one database and one node directory.

    `scheduler` drives agent runs and `environments` owns the multi-agent task centers: clients of
    the server's actors, or (default) in-process objects.
    """
    keys, secrets, audit = KeyStore(db), SecretStore(db, secrets_box(settings)), AuditStore(db)
    egress, llm_policy = settings.egress_policy(), settings.llm_policy()
    outbound_cap = settings.max_outbound_body_mb * 1024 * 1024
    volume_service = VolumeService(
        VolumeStore(db), nodes, settings.max_volume_mb, settings.max_volumes_per_namespace
    )
    session_service = SessionService(
        SessionStore(db),
        nodes,
        settings.sandbox_config(instance_id="", node_id="").default_limits,
        settings.session_ttl_s,
        settings.max_sessions_per_namespace,
        volumes=volume_service,
        max_paused_per_namespace=settings.max_paused_sessions_per_namespace,  # pause
        max_paused_bytes=settings.max_paused_mb_per_namespace * 1024 * 1024,
        snapshots=SnapshotStore(db),  # snapshots
        max_snapshot_bytes=settings.max_snapshot_mb_per_namespace * 1024 * 1024,
        max_snapshots=settings.max_snapshots_per_namespace,
    )
    runners: dict[str, ToolRunner] = {
        "python": PythonToolRunner(),
        "http": HttpToolRunner(policy=egress, max_body_bytes=outbound_cap),
        "mcp": McpToolRunner(policy=egress, max_body_bytes=outbound_cap),
        **(extra_runners or {}),
    }
    humans = HumanRequestStore(db)
    tool_service = ToolService(ToolStore(db), secrets, audit, session_service, runners, humans)
    memory_service = MemoryService(SqlMemoryStore(db))
    if scheduler is None:
        scheduler = RunScheduler(db, tool_service, memory_service, llm_policy)
    agent_service = AgentService(AgentStore(db), RunStore(db), humans, session_service, scheduler, llm_policy)
    return Services(
        settings=settings,
        db=db,
        nodes=nodes,
        keys=keys,
        secrets=secrets,
        audit=audit,
        auth=Authenticator(keys),
        sessions=session_service,
        volumes=volume_service,
        tools=tool_service,
        agents=agent_service,
        memory=memory_service,
        environments=environments
        or EnvironmentManager.from_settings(
            settings,
            use_ray=False,
            tools=EnvironmentTools(session_service, tool_service, actor="", ray_namespace=""),
        ),
    )
