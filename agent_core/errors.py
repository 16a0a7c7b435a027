"""Errors of the agent core, placed in the project's tree (`foundation.errors`).

    AgentError                          root of what agent_core raises on purpose
    ├── LLMError            (RuntimeFailure)   the model endpoint failed; `status_code`, `retryable`
    ├── MaxStepsExceeded    (RuntimeFailure)   the run used its step budget without a final answer
    ├── RepairBudgetExceeded(RuntimeFailure)   the model kept sending malformed tool calls
    ├── PlanningFailed      (RuntimeFailure)   no usable plan, verdict or critique came back
    ├── AttemptsExhausted   (RuntimeFailure)   reflection ran out of attempts
    ├── MalformedCall       (ValidationFailed) a tool call the model can repair: bad JSON, unknown tool, schema
    ├── ScriptExhausted     (UserError)        a ScriptedModel was asked for more turns than it was given
    ├── LLMConfigError      (UserError)        no model name or base URL could be found
    ├── InvalidToolSchema   (UserError)        a local tool was registered with a broken JSON Schema
    ├── UnknownStrategy     (UserError)        build_strategy() was given a name it does not know
    ├── RunNotResumable     (Conflict)         resume() on a finished run, or without the answer it waits for
    └── InvalidRunState     (UserError)        a checkpoint that cannot be read back

The loop turns runtime failures into a `failed` RunState; the user errors are raised to the caller.
All are picklable through the root's `__reduce__`.
"""

from __future__ import annotations

from typing import Any

from foundation.errors import Conflict, RuntimeFailure, ToolServerError, UserError, ValidationFailed

__all__ = [
    "AgentError",
    "AttemptsExhausted",
    "InvalidRunState",
    "InvalidToolSchema",
    "LLMConfigError",
    "LLMError",
    "MalformedCall",
    "MaxStepsExceeded",
    "PlanningFailed",
    "RepairBudgetExceeded",
    "RunNotResumable",
    "ScriptExhausted",
    "UnknownStrategy",
]


class AgentError(ToolServerError):
    """Root of the agent core's exceptions."""

    type = "agent_error"


class LLMError(AgentError, RuntimeFailure):
    """The model endpoint answered with an error, garbage, or not at all."""

    status = 502
    type = "llm_error"

    def __init__(
        self, message: str, *, status_code: int | None = None, retryable: bool = False, **details: Any
    ) -> None:
        super().__init__(message, status_code=status_code, retryable=retryable, **details)
        self.status_code = status_code
        self.retryable = retryable


class MaxStepsExceeded(AgentError, RuntimeFailure):
    """The run used `max_steps` model turns without a final answer."""

    type = "max_steps_exceeded"

    def __init__(self, message: str, *, max_steps: int, **details: Any) -> None:
        super().__init__(message, max_steps=max_steps, **details)
        self.max_steps = max_steps


class RepairBudgetExceeded(AgentError, RuntimeFailure):
    """The model sent malformed tool calls more than `max_repairs` turns in a row."""

    type = "repair_budget_exceeded"

    def __init__(self, message: str, *, max_repairs: int, **details: Any) -> None:
        super().__init__(message, max_repairs=max_repairs, **details)
        self.max_repairs = max_repairs


class PlanningFailed(AgentError, RuntimeFailure):
    """Plan and execute got no usable plan, or the plan did not finish."""

    type = "planning_failed"


class AttemptsExhausted(AgentError, RuntimeFailure):
    """Reflection ran out of attempts without a successful one."""

    type = "attempts_exhausted"

    def __init__(self, message: str, *, attempts: int, **details: Any) -> None:
        super().__init__(message, attempts=attempts, **details)
        self.attempts = attempts


class MalformedCall(AgentError, ValidationFailed):
    """A tool call the model should fix; the message is written for the model."""

    type = "malformed_tool_call"

    def __init__(self, message: str, *, tool: str, field: str | None = None, **details: Any) -> None:
        super().__init__(message, field=field, tool=tool, **details)
        self.tool = tool


class ScriptExhausted(AgentError, UserError):
    """A scripted model was asked for more turns than its script has."""

    type = "script_exhausted"


class LLMConfigError(AgentError, UserError):
    """An LLM client cannot be made from what it was given (e.g. no model)."""

    type = "llm_config_error"


class InvalidToolSchema(AgentError, UserError):
    """A tool's parameters are not a usable JSON Schema."""

    type = "invalid_tool_schema"


class RunNotResumable(AgentError, Conflict):
    """A run cannot be resumed as asked (finished, or not waiting for that answer)."""

    type = "run_not_resumable"


class InvalidRunState(AgentError, UserError):
    """A stored run state cannot be read back."""

    type = "invalid_run_state"


class UnknownStrategy(AgentError, UserError):
    """No strategy of that name."""

    type = "unknown_strategy"
