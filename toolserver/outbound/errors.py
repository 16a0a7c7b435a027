"""How a call the server makes on a tenant's behalf can fail, once it has left the server.

RuntimeFailure
└── ToolCallFailed          the call ran and failed: upstream non-2xx, an exception in the tool, no result
    ├── ToolTimeout         it did not finish within its time limit
    └── ResponseTooLarge    (outbound.body) a body went past the server's ceiling; nothing past it was read

They live here, below the tool runners (`toolserver.tools`), because the outbound transports raise them too.
"""

from __future__ import annotations

from typing import Any

from foundation.errors import RuntimeFailure

__all__ = ["ToolCallFailed", "ToolTimeout"]


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
    """The tool did not finish within its time limit."""

    status = 504
    type = "tool_timeout"

    def __init__(self, message: str, *, timeout_s: float | None = None, **details: Any) -> None:
        details.setdefault("error_type", "timeout")
        super().__init__(message, timeout_s=timeout_s, **details)
        self.timeout_s = timeout_s
