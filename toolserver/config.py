"""Server settings, read from `TOOLSERVER_*` environment variables; every one has a one-machine default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundation.errors import UserError
from sandbox.base import RUNTIMES, Limits, Runtime
from sandbox.config import DEFAULT_IMAGE, SandboxConfig
from sandbox.egress import EgressLimits, parse_rules
from sandbox.processes import ProcessLimits
from toolserver.outbound.egress import EgressPolicy

if TYPE_CHECKING:
    from toolserver.runs.llm import LLMPolicy

__all__ = ["Settings"]


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.toolserver"))


def _listed(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


class Settings(BaseSettings):
    """Everything `toolserver up` needs; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="TOOLSERVER_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home, description="state directory (keys, database, caches)")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in home")
    api_key: str | None = Field(None, description="admin API key; default: generated into home/admin.key")
    secrets_key: str | None = Field(
        None,
        description="key sealing secrets at rest (32 bytes, base64url); default: generated into home/secrets.key",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    ray_address: str | None = Field(None, description="Ray cluster to join; the CLI also reads RAY_ADDRESS")
    replicas: int = Field(
        0,
        ge=0,
        description="ingress replicas; 0: two on distinct nodes when Ray has several nodes, else one",
    )
    service_resource: str = Field(
        "",
        description="a custom Ray resource the server's singletons (run scheduler, environment center, node"
        " watcher) run on; default: they prefer the head node and restart on any node when theirs is lost",
    )
    fast_ingress: bool | None = Field(
        None,
        description="HAProxy in front of the replicas (needs haproxy; its stats and metrics listen on every "
        "interface)",
    )
    direct_ingress: bool = Field(
        True,
        description="with one ingress replica on one machine, the replica serves the port itself (no proxy hop)",
    )
    node_lane: bool = Field(
        True, description="replicas call their own node's sandbox manager over a unix socket, not a Ray call"
    )
    sandbox_image: str = DEFAULT_IMAGE
    allowed_images: str = Field(
        "", description="images sessions may name, comma-separated; default: the sandbox image alone"
    )
    sandbox_runtime: Runtime = Field(
        "runc", description="container runtime of sessions that name none: runc, or runsc (gVisor)"
    )
    allowed_runtimes: str = Field(
        "", description="runtimes sessions may name, comma-separated; default: the sandbox runtime alone"
    )
    pool_size: int = Field(2, description="warm sandboxes kept ready, per allowed runtime")
    default_memory_mb: int = 1024
    default_cpus: float = 1.0
    default_pids: int = 256
    default_disk_mb: int = 512
    max_memory_mb: int = 8192
    max_cpus: float = 4.0
    max_pids: int = 4096
    max_disk_mb: int = 8192
    allow_open_network: bool = Field(
        False,
        description='may a session ask for network: "bridge" (unfiltered, on a network without inter-container'
        " traffic)",
    )
    session_ttl_s: float = 3600.0
    max_processes_per_session: int = Field(
        16, gt=0, le=256, description="background processes one session may run at once"
    )
    process_output_kb: int = Field(
        1024, ge=64, le=65536, description="output kept per background process (a ring buffer), KiB"
    )
    port_sharing: bool = Field(True, description="may sessions share a port by a preview URL without the key")
    port_max_connections: int = Field(
        32, gt=0, description="open connections to one session's ports, per ingress replica"
    )
    port_bytes_per_s: int = Field(
        25 * 1024 * 1024,
        gt=0,
        description="bytes per second through one session's ports, per ingress replica",
    )
    max_sessions_per_namespace: int = Field(
        32, ge=0, description="live sessions a namespace may hold (0: no cap)"
    )
    max_volume_mb: int = Field(10240, gt=0, description="the largest volume a tenant may make, MiB")
    session_pause_after_s: float = Field(  # pause: idle sessions pause, then end at their TTL
        0.0,
        ge=0,
        description="idle seconds after which a session pauses instead of holding its container (0: never)",
    )
    max_paused_sessions_per_namespace: int = Field(
        128, ge=0, description="paused sessions a namespace may hold, besides its live ones (0: no cap)"
    )
    max_paused_mb_per_namespace: int = Field(  # pause: what a namespace's paused sessions keep, in all
        16384,
        ge=0,
        description="the total a namespace's paused sessions keep (files and memory), MiB (0: no cap)",
    )
    max_pause_archive_mb: int = Field(
        1024, gt=0, description="the largest /workspace and /tmp a pause (or snapshot) keeps, MiB"
    )
    max_snapshot_mb_per_namespace: int = Field(  # snapshots: the namespace's total
        4096, ge=0, description="the total size of a namespace's snapshots, MiB (0: no cap)"
    )
    max_snapshots_per_namespace: int = Field(  # snapshots: how many, whatever their size
        256, ge=0, description="snapshots a namespace may keep (0: no cap)"
    )
    max_volumes_per_namespace: int = Field(16, ge=0, description="volumes a namespace may hold")
    max_environments_per_namespace: int = Field(
        8, ge=0, description="live environments a namespace may hold (0: no cap)"
    )
    max_env_agents_per_namespace: int = Field(
        64, ge=0, description="agents across a namespace's live environments (0: no cap)"
    )
    max_streams_per_namespace: int = Field(
        8, ge=0, description="open event streams and long-polls per namespace on each replica (0: no cap)"
    )
    max_stream_s: float = Field(900.0, gt=0, description="longest an event stream stays open, seconds")
    max_outbound_body_mb: int = Field(
        16, gt=0, description="largest body the server reads from a tenant-chosen url (tools, MCP, LLMs)"
    )
    output_limit: int = 64 * 1024
    max_file_mb: int = 64
    max_body_mb: int = 80
    max_code_kb: int = 1024
    egress_allow: str = Field(
        "",
        description="where http/mcp tools and agents' LLM endpoints may connect besides public addresses",
    )
    sandbox_egress_allow: str = Field(
        "",
        description="where sandboxes' egress proxies may connect besides public addresses (the same forms as"
        " TOOLSERVER_EGRESS_ALLOW, kept apart: a sandbox gets raw TCP through CONNECT)",
    )
    sandbox_egress_max: str = Field(
        "*",
        description='what sessions with network {"egress": [...]} may list: comma-separated names, *.domains,'
        " either with :port, or * for any (each connection is still held to public addresses)",
    )
    sandbox_egress_default: str = Field(
        "", description='the allow-list of a session that asks for {"egress": []} (comma-separated)'
    )
    sandbox_egress_max_connections: int = Field(
        32, gt=0, description="connections one session's egress proxy keeps open at once"
    )
    sandbox_egress_bytes_per_s: int = Field(
        25 * 1024 * 1024, gt=0, description="bytes per second one session's egress proxy carries, both ways"
    )
    e2b_templates: str = Field(
        "",
        description="E2B template names for the E2B front, name=image comma-separated (each image allowed);"
        " base and code-interpreter-v1 mean the sandbox image",
    )
    llm_key_envs: str = Field(
        "",
        description="NAME=ENDPOINT entries: a server environment variable agents may name as llm.api_key_env,"
        " and where it may be sent",
    )

    @field_validator("egress_allow", "sandbox_egress_allow")
    @classmethod
    def _egress_entries(cls, value: str) -> str:
        EgressPolicy.parse(value)  # a bad entry stops the server at start, with its name
        return value

    @field_validator("sandbox_egress_max", "sandbox_egress_default")
    @classmethod
    def _egress_rules(cls, value: str) -> str:
        entries = [entry for entry in _listed(value) if entry != "*"]
        try:
            parse_rules(entries)
        except UserError as exc:  # a bad entry stops the server at start, with its name
            raise ValueError(exc.message) from None
        return value

    @field_validator("allowed_runtimes")
    @classmethod
    def _known_runtimes(cls, value: str) -> str:
        unknown = [name for name in _listed(value) if name not in RUNTIMES]
        if unknown:
            raise ValueError(
                f"unknown runtime(s) {', '.join(unknown)}: each must be one of {', '.join(RUNTIMES)}"
            )
        return value

    def allowed_runtime_list(self) -> tuple[Runtime, ...]:
        """The runtimes sessions may use, the default first; the default alone when the operator lists none."""
        listed = _listed(self.allowed_runtimes)
        return tuple(dict.fromkeys([self.sandbox_runtime, *(name for name in RUNTIMES if name in listed)]))

    def allowed_image_list(self) -> tuple[str, ...]:
        """The images sessions may use; the sandbox image when the operator lists none."""
        listed = tuple(name.strip() for name in self.allowed_images.split(",") if name.strip())
        return listed or (self.sandbox_image,)

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.egress_allow)

    def llm_policy(self) -> LLMPolicy:
        """Agents' LLM endpoints and shared keys (each bound to its endpoints); UserError on a bad entry."""
        from toolserver.runs.llm import LLMPolicy  # the agent core is not needed to read settings

        return LLMPolicy.from_setting(
            self.egress_policy(), self.llm_key_envs, self.max_outbound_body_mb * 1024 * 1024
        )

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'toolserver.db'}"

    @property
    def admin_key_file(self) -> Path:
        return self.home / "admin.key"

    @property
    def secrets_key_file(self) -> Path:
        return self.home / "secrets.key"

    def sandbox_config(self, *, instance_id: str, node_id: str) -> SandboxConfig:
        return SandboxConfig(
            image=self.sandbox_image,
            allowed_images=self.allowed_image_list(),
            default_limits=Limits(
                memory_mb=self.default_memory_mb,
                cpus=self.default_cpus,
                pids=self.default_pids,
                disk_mb=self.default_disk_mb,
            ),
            max_limits=Limits(
                memory_mb=self.max_memory_mb,
                cpus=self.max_cpus,
                pids=self.max_pids,
                disk_mb=self.max_disk_mb,
                nofile=65536,
                tmp_mb=1024,
            ),
            pool_size=self.pool_size,
            output_limit=self.output_limit,
            max_file_bytes=self.max_file_mb * 1024 * 1024,
            max_code_bytes=self.max_code_kb * 1024,
            processes=ProcessLimits(self.max_processes_per_session, self.process_output_kb * 1024),
            instance_id=instance_id,
            node_id=node_id,
            allow_network=self.allow_open_network,
            volumes_dir=str(self.home / "volumes"),
            max_volume_mb=self.max_volume_mb,
            pause_after_s=self.session_pause_after_s,  # pause: its settings
            paused_dir=str(self.home / "paused"),
            max_pause_archive_mb=self.max_pause_archive_mb,
            snapshots_dir=str(self.home / "snapshots"),  # snapshots: where a node keeps them
            egress=EgressLimits(
                operator_allow=self.sandbox_egress_allow,
                maximum=tuple(_listed(self.sandbox_egress_max)),
                default=tuple(_listed(self.sandbox_egress_default)),
                max_connections=self.sandbox_egress_max_connections,
                bytes_per_s=self.sandbox_egress_bytes_per_s,
            ),
            default_ttl_s=self.session_ttl_s,
            runtime=self.sandbox_runtime,
            allowed_runtimes=self.allowed_runtime_list(),
        )
