"""The API's request bodies (pydantic: a trust boundary, unknown keys are refused), for routes and services."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AgentCreate",
    "EgressNetwork",
    "EnvironmentCreate",
    "EnvironmentMessage",
    "EnvironmentStep",
    "HumanAnswer",
    "KeyCreate",
    "LimitsBody",
    "OpenAPIImport",
    "PythonRequest",
    "RunCreate",
    "SecretPut",
    "SessionCreate",
    "ShellRequest",
    "ToolCall",
    "ToolCreate",
    "VolumeCreate",
    "VolumeUse",
]


class _Body(BaseModel):
    """A request body: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


class LimitsBody(_Body):
    """Resource limits asked for a session (each capped by the server's maximum)."""

    memory_mb: int | None = Field(None, gt=0)
    cpus: float | None = Field(None, gt=0)
    pids: int | None = Field(None, gt=0)
    disk_mb: int | None = Field(None, gt=0)


class EgressNetwork(_Body):
    """A session network that reaches only the listed names, through its node's egress proxy."""

    egress: list[Annotated[str, Field(min_length=1, max_length=260)]] = Field(
        ...,
        max_length=64,
        description="`host`, `*.domain` or either with `:port` (default ports 80 and 443); empty: the"
        " operator's default list (TOOLSERVER_SANDBOX_EGRESS_DEFAULT)",
    )


VOLUME_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class VolumeCreate(_Body):
    """`POST /v1/volumes`: a namespace's volume, by name."""

    name: str = Field(..., pattern=VOLUME_NAME, description="lower case letters, digits, '.', '_' and '-'")
    size_mb: int = Field(..., gt=0, description="its size cap (at most TOOLSERVER_MAX_VOLUME_MB)")


class VolumeUse(_Body):
    """A volume a new session mounts."""

    name: str = Field(..., pattern=VOLUME_NAME)
    path: str = Field(..., max_length=256, description="where the sandbox sees it, below /workspace")
    read_only: bool = False


class SessionCreate(_Body):
    """`POST /v1/sessions`."""

    image: str | None = Field(None, max_length=256)
    limits: LimitsBody | None = None
    network: Literal["none", "bridge"] | EgressNetwork = Field(
        "none",
        description='"none" (the default), {"egress": [names]}, or "bridge" (only where the operator opens it)',
    )
    ttl_s: float | None = Field(None, gt=0)
    volumes: list[VolumeUse] = Field(
        default_factory=list, max_length=8, description="the namespace's volumes to mount (all on one node)"
    )
    runtime: Literal["runc", "runsc"] | None = Field(
        None, description="container runtime (within TOOLSERVER_ALLOWED_RUNTIMES); default: the server's"
    )
    from_snapshot: str | None = Field(  # snapshots: forks
        None, pattern=r"^snap_[0-9a-f]{1,32}$", description="start with this snapshot's files (a fork)"
    )
    count: int = Field(1, ge=1, le=10, description="with from_snapshot: how many forks to start")


class ShellRequest(_Body):
    """`POST /v1/sessions/{id}/shell`."""

    command: str
    timeout_s: float = Field(30.0, gt=0, le=3600)
    stream: bool = Field(False, description="answer with server-sent events as the output comes")
    cancel_on_disconnect: bool = Field(
        False, description="a streamed command is interrupted when the client goes"
    )


class PythonRequest(_Body):
    """`POST /v1/sessions/{id}/python`."""

    code: str
    timeout_s: float = Field(30.0, gt=0, le=3600)
    stream: bool = Field(False, description="answer with server-sent events as the output comes")
    cancel_on_disconnect: bool = Field(
        False, description="a streamed cell is interrupted when the client goes"
    )


class ToolCreate(_Body):
    """`POST /v1/tools`: a python, http or deployment tool."""

    name: str = Field(..., max_length=64)
    description: str = Field("", max_length=8192)
    kind: Literal["python", "http", "deployment"]
    parameters: dict[str, Any] | None = None
    source: str | None = None
    function: str | None = None
    url: str | None = None
    method: str = "GET"
    headers: dict[str, str] | None = None
    secret_headers: dict[str, str] | None = None
    query: list[str] | None = None
    body: list[str] | Literal["all"] | None = None
    timeout_s: float | None = Field(None, gt=0, le=600)
    max_response_bytes: int | None = Field(
        None,
        gt=0,
        le=2**40,
        description="largest response body the tool reads; at most the server's TOOLSERVER_MAX_OUTBOUND_BODY_MB",
    )
    follow_redirects: bool | None = None
    import_path: str | None = None
    num_replicas: int | None = Field(None, ge=1, le=64)
    ray_actor_options: dict[str, Any] | None = None
    autoscaling: dict[str, Any] | None = None


class ToolCall(_Body):
    """`POST /v1/tools/{name}/call`."""

    arguments: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = None


class OpenAPIImport(_Body):
    """`POST /v1/tools/import/openapi`."""

    document: dict[str, Any] | str
    base_url: str | None = None
    prefix: str = ""


class KeyCreate(_Body):
    """`POST /v1/keys`."""

    namespace: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    name: str = Field("", max_length=128)
    admin: bool = False


class SecretPut(_Body):
    """`PUT /v1/secrets/{name}`."""

    value: str = Field(..., max_length=16384)


class AgentCreate(_Body):
    """`POST /v1/agents`: define or redefine an agent."""

    name: str = Field(..., pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    system_prompt: str = Field("You are a helpful agent.", max_length=65536)
    tools: list[str] = Field(default_factory=list, max_length=128)
    llm: dict[str, Any] = Field(..., description="{provider: openai|scripted, base_url, model, ...}")
    memory_scope: str | None = Field(None, max_length=200)
    max_steps: int = Field(20, ge=1, le=500)
    strategy: Literal["function_calling", "plan_execute", "reflection"] = "function_calling"
    human_timeout_s: float | None = Field(None, gt=0)
    on_human_timeout: Literal["continue", "fail"] = "continue"


class RunCreate(_Body):
    """`POST /v1/runs`."""

    agent: str = Field(..., max_length=64)
    task: str = Field(..., min_length=1, max_length=262144)
    session_id: str | None = None


class HumanAnswer(_Body):
    """`POST /v1/human-requests/{id}/answer`."""

    answer: str = Field(..., max_length=65536)


class EnvironmentCreate(_Body):
    """`POST /v1/environments`."""

    name: str = Field(..., pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
    # Each agent is a process on the cluster; the namespace's cap (TOOLSERVER_MAX_ENV_AGENTS_PER_NAMESPACE) also counts.
    agents: list[dict[str, Any]] = Field(..., min_length=1, max_length=64)
    router: str | dict[str, Any] = "send_to"
    subscriptions: list[dict[str, str]] = Field(default_factory=list, max_length=256)
    act_timeout_s: float = Field(120.0, gt=0, le=3600)


class EnvironmentMessage(_Body):
    """`POST /v1/environments/{name}/messages`."""

    content: str = Field(..., max_length=200_000)
    sender: str = "user"
    recipients: list[str] = Field(default_factory=list, max_length=256)
    topic: str = "general"
    metadata: dict[str, Any] = Field(default_factory=dict)


class EnvironmentStep(_Body):
    """`POST /v1/environments/{name}/step`."""

    steps: int = Field(1, ge=1, le=100)
