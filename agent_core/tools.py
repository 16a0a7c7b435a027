"""The seam between the agent loop and tool execution, plus a local executor for trusted callables.

`LocalToolExecutor` runs the caller's own Python functions in-process: it exists for tests and
demos. User-registered tools never run here; the server's executor sends them to a sandbox.

Argument checks use the server's bounded validators (RE2 patterns, linear `uniqueItems`, a work budget, no
reference ever fetched): the schemas and the model's arguments are tenants' text. Checking a schema costs about
7 us per byte (1.9 s for 256 KB), so an `ArgumentChecker` checks each tool's schema when that tool is first
called, not when it is built, once per schema in the process (a memo by hash, bounded in bytes), and the loop
runs its checks on a small pool of its own (`check_off_loop`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jsonschema
import jsonschema.validators
from referencing.exceptions import Unresolvable

from agent_core.errors import InvalidToolSchema, MalformedCall
from foundation.errors import ValidationFailed
from foundation.schema.bounded import (
    NO_RETRIEVAL,
    bounded_validator,
    check_schema_cost,
    validation_budget,
)
from foundation.schema.formats import FORMAT_CHECKER
from foundation.schema.validation import MAX_ARGUMENT_BYTES, MAX_CACHED_SCHEMA_BYTES, ValidatorCache

__all__ = [
    "ASK_HUMAN_PARAMETERS",
    "ASK_HUMAN_TOOL",
    "ArgumentChecker",
    "HumanWait",
    "LocalTool",
    "LocalToolExecutor",
    "ToolExecutor",
    "ToolOutcome",
    "ask_human_tool",
    "openai_tool_schema",
]

ASK_HUMAN_TOOL = "ask_human"
ASK_HUMAN_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "question": {"type": "string", "description": "What you need a human to answer or decide."},
        "context": {"type": "string", "description": "What the human needs to know to answer."},
    },
    "required": ["question"],
    "additionalProperties": False,
}
_SCHEMA_EXCERPT = 1500
# Two threads for every run in the process: a check is bounded (about 2 s at worst), and registry calls keep
# the default pool to themselves.
_CHECKS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="agent-argument-check")


@dataclass(frozen=True)
class HumanWait:
    """A tool asked a human; the run pauses until `request_id` is answered."""

    request_id: str
    question: str
    context: str | None = None


@dataclass(frozen=True)
class ToolOutcome:
    """The result of one call; `content` is what goes back to the model."""

    ok: bool
    content: str
    waiting_human: HumanWait | None = None

    @classmethod
    def success(cls, content: str) -> ToolOutcome:
        """A call that worked; `content` goes back to the model."""
        return cls(True, content)

    @classmethod
    def failure(cls, content: str) -> ToolOutcome:
        """A call that failed; `content` tells the model why."""
        return cls(False, content)

    @classmethod
    def waiting(cls, wait: HumanWait) -> ToolOutcome:
        """A call that waits for a human's answer."""
        return cls(True, f"Waiting for a human to answer: {wait.question}", wait)


@runtime_checkable
class ToolExecutor(Protocol):
    """Where the loop sends tool calls: the server's runners, or `LocalToolExecutor`."""

    def tool_schemas(self) -> list[dict[str, Any]]:
        """Tools the model may call, in OpenAI `tools=[...]` format."""
        ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Run one call; failures come back as `ok=False` outcomes, not exceptions."""
        ...


def openai_tool_schema(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool in OpenAI's `tools=[...]` format."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _checked_validator(parameters: dict[str, Any]) -> Any:
    """A bounded validator of `parameters`, or None when the schema is broken or unbounded."""
    cls = jsonschema.validators.validator_for(parameters)
    try:
        check_schema_cost(parameters)
        cls.check_schema(parameters, format_checker=FORMAT_CHECKER)
    except (jsonschema.SchemaError, ValidationFailed, RecursionError):
        return None  # a broken or unbounded remote schema is the executor's to report, not the model's
    return bounded_validator(cls)(parameters, registry=NO_RETRIEVAL)


_VALIDATORS = ValidatorCache(MAX_CACHED_SCHEMA_BYTES, _checked_validator)


class ArgumentChecker:
    """Checks a call against the advertised schemas; raises `MalformedCall` worded for the model.

    Building one is cheap (it only reads the names); each tool's schema is checked on its first call.
    """

    def __init__(self, schemas: Iterable[dict[str, Any]]) -> None:
        self._parameters: dict[str, dict[str, Any]] = {}
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()
        for schema in schemas:
            function = schema.get("function", schema)
            self._parameters[function["name"]] = function.get("parameters") or {"type": "object"}

    @property
    def names(self) -> list[str]:
        """The names of the tools it checks calls against."""
        return list(self._parameters)

    def check(self, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """The parsed arguments of a well-formed call."""
        if name not in self._parameters:
            known = ", ".join(self._parameters) or "none"
            raise MalformedCall(f"Error: unknown tool {name!r}. Available tools: {known}.", tool=name)
        parsed = _parse_arguments(name, arguments)
        validator = self._validator(name)
        try:
            with validation_budget():
                errors = (
                    sorted(validator.iter_errors(parsed), key=lambda e: list(e.path)) if validator else []
                )
        except ValidationFailed as exc:
            raise MalformedCall(
                f"Error: invalid arguments for tool {name!r}: {exc.message}", tool=name
            ) from None
        except RecursionError:
            raise MalformedCall(
                f"Error: the arguments for tool {name!r} are nested too deeply.", tool=name
            ) from None
        except Unresolvable:
            return parsed  # the schema's fault, not the model's: the executor reports it
        if errors:
            where = [
                f"at {'/'.join(str(p) for p in e.path) or '(top level)'}: {e.message}" for e in errors[:5]
            ]
            schema = json.dumps(self._parameters[name])[:_SCHEMA_EXCERPT]
            raise MalformedCall(
                f"Error: invalid arguments for tool {name!r}: {'; '.join(where)}. "
                f"Call it again with arguments matching this JSON Schema: {schema}",
                tool=name,
                field="/".join(str(p) for p in errors[0].path) or None,
            )
        return parsed

    async def check_off_loop(self, name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
        """`check` on the checkers' own thread pool: a first call's schema check takes up to seconds."""
        return await asyncio.get_running_loop().run_in_executor(_CHECKS, self.check, name, arguments)

    def _validator(self, name: str) -> Any:
        with self._lock:
            if name in self._validators:
                return self._validators[name]
        try:
            text = json.dumps(self._parameters[name], sort_keys=True, ensure_ascii=False)
            validator = _VALIDATORS(text)
        except (TypeError, ValueError, RecursionError):
            validator = None
        with self._lock:
            self._validators[name] = validator
        return validator


def _parse_arguments(name: str, arguments: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    if len(arguments) > MAX_ARGUMENT_BYTES:
        raise MalformedCall(
            f"Error: the arguments for tool {name!r} are {len(arguments)} characters, over the cap of "
            f"{MAX_ARGUMENT_BYTES}.",
            tool=name,
        )
    if not arguments.strip():
        return {}  # some models send "" for a tool without parameters
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        raise MalformedCall(
            f"Error: the arguments for tool {name!r} are not valid JSON ({exc}). "
            "Call it again with a single JSON object as arguments.",
            tool=name,
        ) from exc
    if not isinstance(parsed, dict):
        raise MalformedCall(
            f"Error: the arguments for tool {name!r} must be a JSON object, not {type(parsed).__name__}.",
            tool=name,
        )
    return parsed


@dataclass(frozen=True)
class LocalTool:
    """A trusted Python callable (sync or async) with the JSON Schema of its keyword arguments."""

    name: str
    fn: Callable[..., Any]
    parameters: dict[str, Any]
    description: str = ""

    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI's `tools=[...]` format."""
        return openai_tool_schema(self.name, self.description, self.parameters)


def ask_human_tool(
    create_request: Callable[[str, str | None], str | Awaitable[str]] | None = None,
) -> LocalTool:
    """The `ask_human` tool: `create_request(question, context)` files the request and returns its id."""

    async def ask_human(question: str, context: str | None = None) -> HumanWait:
        request_id: Any = create_request(question, context) if create_request else f"hr_{uuid.uuid4().hex}"
        if inspect.isawaitable(request_id):
            request_id = await request_id
        return HumanWait(str(request_id), question, context)

    return LocalTool(
        ASK_HUMAN_TOOL, ask_human, ASK_HUMAN_PARAMETERS, "Ask a human for help, information or a decision."
    )


class LocalToolExecutor:
    """Runs trusted in-process callables; sync ones go to a worker thread so calls overlap."""

    def __init__(self, tools: Iterable[LocalTool] = (), *, max_output_chars: int = 20_000) -> None:
        self.max_output_chars = max_output_chars
        self._tools: dict[str, LocalTool] = {}
        self._checker = ArgumentChecker(())
        for tool in tools:
            self.add(tool)

    def add(
        self,
        fn: LocalTool | Callable[..., Any],
        *,
        parameters: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> LocalTool:
        """Register a tool; a bare callable needs `parameters` (its JSON Schema)."""
        if isinstance(fn, LocalTool):
            tool = fn
        else:
            if parameters is None:
                raise InvalidToolSchema(f"tool {name or fn.__name__!r} needs a JSON Schema in parameters=")
            doc = (inspect.getdoc(fn) or "").strip().splitlines()
            tool = LocalTool(name or fn.__name__, fn, parameters, description or (doc[0] if doc else ""))
        try:
            jsonschema.validators.validator_for(tool.parameters).check_schema(tool.parameters)
            check_schema_cost(tool.parameters)
        except jsonschema.SchemaError as exc:
            raise InvalidToolSchema(f"tool {tool.name!r} has an invalid JSON Schema: {exc.message}") from exc
        except ValidationFailed as exc:
            raise InvalidToolSchema(f"tool {tool.name!r}: {exc.field}: {exc.message}") from None
        if tool.parameters.get("type") != "object":
            raise InvalidToolSchema(f"tool {tool.name!r}: parameters must be a schema of type 'object'")
        self._tools[tool.name] = tool
        self._checker = ArgumentChecker(self.tool_schemas())
        return tool

    def tool_schemas(self) -> list[dict[str, Any]]:
        """The schemas of the registered tools."""
        return [tool.schema() for tool in self._tools.values()]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Check and run a registered tool; its result as text (capped at `max_output_chars`), an error as a failure."""
        try:
            arguments = self._checker.check(name, arguments)
        except MalformedCall as exc:
            return ToolOutcome.failure(exc.message)
        fn = self._tools[name].fn
        try:
            if inspect.iscoroutinefunction(fn):
                result = await fn(**arguments)
            else:
                result = await asyncio.to_thread(fn, **arguments)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            return ToolOutcome.failure(f"Error: {type(exc).__name__}: {exc}")
        return self._outcome(result)

    def _outcome(self, result: Any) -> ToolOutcome:
        if isinstance(result, ToolOutcome):
            return result
        if isinstance(result, HumanWait):
            return ToolOutcome.waiting(result)
        text = result if isinstance(result, str) else json.dumps(result, default=str, ensure_ascii=False)
        if len(text) > self.max_output_chars:
            cut = len(text) - self.max_output_chars
            text = f"{text[: self.max_output_chars]}\n[... output truncated: {cut} more characters]"
        return ToolOutcome.success(text)
