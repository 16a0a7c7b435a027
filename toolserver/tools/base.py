"""The tool seam: what a tool is (`ToolSpec`), what runs one (`ToolRunner`), and how a call can fail.

RuntimeFailure
└── ToolCallFailed      the tool ran and failed: upstream non-2xx, an exception in the tool, no result
    └── ToolTimeout     the tool did not finish within its time limit
UserError
└── MissingSecret       a secret the tool's config names is not set for the caller's namespace
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from foundation.errors import RuntimeFailure, UserError, ValidationFailed

if TYPE_CHECKING:
    from sandbox.base import Sandbox

__all__ = [
    "TOOL_NAME_PATTERN",
    "CallContext",
    "MissingSecret",
    "ToolCallFailed",
    "ToolKind",
    "ToolRunner",
    "ToolSpec",
    "ToolTimeout",
    "check_tool_name",
    "config_str_map",
    "empty_parameters",
    "secret_header_values",
]

ToolKind = Literal["builtin", "python", "http", "deployment", "mcp"]

# OpenAI's rule for function names; MCP and most other clients accept the same set.
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,63}$")


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


class ToolRunner(abc.ABC):
    """Runs tools of one kind; arguments arrive already validated against `tool.parameters`."""

    @abc.abstractmethod
    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Call `tool` with `arguments`; return a JSON-serialisable result or raise ToolCallFailed."""


class ToolCallFailed(RuntimeFailure):
    """The tool ran and failed; `status_code` is the upstream HTTP status when there is one."""

    status = 502
    type = "tool_call_failed"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error_type: str | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message, status_code=status_code, error_type=error_type, **details)
        self.status_code = status_code
        self.error_type = error_type


class ToolTimeout(ToolCallFailed):
    status = 504
    type = "tool_timeout"

    def __init__(self, message: str, *, timeout_s: float | None = None, **details: Any) -> None:
        details.setdefault("error_type", "timeout")
        super().__init__(message, timeout_s=timeout_s, **details)
        self.timeout_s = timeout_s


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


def config_str_map(config: Mapping[str, Any], key: str) -> dict[str, str]:
    """`config[key]` as a map of strings (empty when absent); ValidationFailed(field="config.<key>") if not."""
    value = config.get(key) or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValidationFailed(f"{key} must map names to strings", field=f"config.{key}")
    return dict(value)
