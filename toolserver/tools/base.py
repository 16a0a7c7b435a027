"""The tool seam: what a tool is (`ToolSpec`), what serves one kind (`ToolRunner`), how a call can fail.

RuntimeFailure
└── ToolCallFailed      (outbound.errors) the tool ran and failed: upstream non-2xx, an exception, no result
    └── ToolTimeout     (outbound.errors) the tool did not finish within its time limit
UserError
└── MissingSecret       a secret the tool's config names is not set for the caller's namespace
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from foundation.errors import UserError, ValidationFailed
from toolserver.outbound.errors import ToolCallFailed, ToolTimeout

if TYPE_CHECKING:
    from sandbox.base import Sandbox

__all__ = [
    "TOOL_NAME_PATTERN",
    "CallContext",
    "MissingSecret",
    "ToolCallFailed",
    "ToolDraft",
    "ToolKind",
    "ToolRunner",
    "ToolRunners",
    "ToolSpec",
    "ToolTimeout",
    "check_tool_name",
    "config_str_map",
    "empty_parameters",
    "secret_header_names",
    "secret_header_values",
]

ToolKind = Literal["builtin", "python", "http", "deployment", "mcp"]

# OpenAI's rule for function names; MCP and most other clients accept the same set.
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")
_R = TypeVar("_R", bound="ToolRunner")


def check_tool_name(name: object) -> str:
    """Return `name` when it is a valid tool name, else raise ValidationFailed(field="name")."""
    if not isinstance(name, str) or not TOOL_NAME_PATTERN.fullmatch(name):
        raise ValidationFailed(
            f"invalid tool name {name!r}: use 1-64 characters, a letter first, "
            "then letters, digits, '_' or '-'",
            field="name",
        )
    return name


def empty_parameters() -> dict[str, Any]:
    """The JSON Schema of a tool that takes no arguments."""
    return {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


@dataclass(frozen=True)
class ToolSpec:
    """A registered tool: its public schema plus the kind-specific config its runner needs."""

    name: str
    description: str = ""
    kind: ToolKind = "builtin"
    parameters: dict[str, Any] = field(default_factory=empty_parameters)
    config: dict[str, Any] = field(default_factory=dict)
    namespace: str = ""
    version: int = 1

    def __post_init__(self) -> None:
        check_tool_name(self.name)
        if self.kind not in get_args(ToolKind):
            raise ValidationFailed(
                f"unknown tool kind {self.kind!r}; expected one of {', '.join(get_args(ToolKind))}",
                field="kind",
            )


@dataclass(frozen=True)
class CallContext:
    """Who is calling and with what: the caller's namespace, session sandbox and secrets."""

    namespace: str
    session_id: str | None = None
    sandbox: Sandbox | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)


def _any_object() -> dict[str, Any]:
    return {"type": "object", "properties": {}, "additionalProperties": True}


@dataclass(frozen=True)
class ToolDraft:
    """A registration as the caller sent it: the common fields, the kind's own fields, and who asks."""

    name: str
    kind: str
    namespace: str
    description: str = ""
    parameters: dict[str, Any] | None = None  # already checked; None: the runner derives or defaults them
    fields: Mapping[str, Any] = field(default_factory=dict)  # the kind's own: source, url, import_path, ...
    is_admin: bool = False

    def spec(
        self,
        config: dict[str, Any],
        *,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> ToolSpec:
        """The spec this draft registers with `config`; parameters default to the draft's, else any object."""
        if parameters is None:
            parameters = self.parameters if self.parameters is not None else _any_object()
        return ToolSpec(
            name=self.name,
            description=self.description if description is None else description,
            kind=self.kind,  # type: ignore[arg-type]  # ToolSpec checks it
            parameters=parameters,
            config=config,
            namespace=self.namespace,
        )


class ToolRunner(abc.ABC):
    """Everything about tools of one kind: how one is registered, listed, called and removed.

    `ToolService` holds one runner per kind (a `ToolRunners`) and asks the tool's runner at each step instead
    of branching on the kind. Only `run` is required; the other hooks default to "nothing to do".
    """

    @abc.abstractmethod
    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Call `tool` with `arguments`; return a JSON-serialisable result or raise ToolCallFailed."""

    def build_spec(self, draft: ToolDraft) -> ToolSpec:
        """Check a registration of this kind and build its spec; may be slow (it runs off the event loop)."""
        raise UserError(f"{draft.kind} tools cannot be registered through this route", field="kind")

    async def install(self, spec: ToolSpec) -> None:
        """Make a newly registered tool callable, before its record is stored (e.g. deploy it)."""
        return None

    async def uninstall(self, spec: ToolSpec) -> None:
        """Undo `install` once the tool's record is deleted."""
        return None

    def shared_tools(self) -> Sequence[ToolSpec]:
        """Tools of this kind every namespace sees without registering them."""
        return ()

    def secret_names(self, tool: ToolSpec) -> Sequence[str]:
        """Names of the caller's secrets a call of `tool` needs in `CallContext.secrets`."""
        return ()

    def needs_sandbox(self, tool: ToolSpec) -> bool:
        """Whether a call of `tool` runs in the caller's session sandbox (`CallContext.sandbox`)."""
        return False


class ToolRunners:
    """The runner of each tool kind; asking for a kind no runner serves is a UserError naming it."""

    def __init__(self, runners: Mapping[str, ToolRunner]) -> None:
        self._runners = dict(runners)

    def __getitem__(self, kind: str) -> ToolRunner:
        try:
            return self._runners[kind]
        except KeyError:
            raise UserError(f"this server has no {kind} tool runner configured", field="kind") from None

    def __contains__(self, kind: object) -> bool:
        return kind in self._runners

    def get(self, kind: str) -> ToolRunner | None:
        """The runner of `kind`, or None."""
        return self._runners.get(kind)

    def of(self, kind: str, cls: type[_R]) -> _R:
        """The runner of `kind` when it is a `cls`, else the UserError of a missing runner."""
        runner = self._runners.get(kind)
        if not isinstance(runner, cls):
            raise UserError(f"this server has no {kind} tool runner configured")
        return runner

    def shared_tools(self) -> list[ToolSpec]:
        """Every runner's shared tools (the builtin ones)."""
        return [spec for runner in self._runners.values() for spec in runner.shared_tools()]


class MissingSecret(UserError):
    """The tool needs a secret the caller's namespace has not set."""

    type = "missing_secret"

    def __init__(self, message: str, *, secret: str, **details: Any) -> None:
        super().__init__(message, secret=secret, **details)
        self.secret = secret


def secret_header_values(secret_headers: Mapping[str, str], secrets: Mapping[str, str]) -> dict[str, str]:
    """`{header: value}` for a config's `secret_headers` (header -> secret name); MissingSecret names a gap."""
    values = {}
    for header, secret in secret_headers.items():
        if secret not in secrets:
            raise MissingSecret(
                f"the tool needs the secret {secret!r} (for header {header!r}), which is not set for this namespace",
                secret=secret,
                header=header,
            )
        values[header] = secrets[secret]
    return values


def secret_header_names(config: Mapping[str, Any]) -> list[str]:
    """The secret names a config's `secret_headers` (header -> secret name) asks for."""
    return list((config.get("secret_headers") or {}).values())


def config_str_map(config: Mapping[str, Any], key: str) -> dict[str, str]:
    """`config[key]` as a map of strings (empty when absent); ValidationFailed(field="config.<key>") if not."""
    value = config.get(key) or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationFailed(f"{key} must map names to strings", field=f"config.{key}")
    return dict(value)
