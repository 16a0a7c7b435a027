"""The agent loop's tools on the server: registered and builtin tools, ask_human, remember and recall."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from agent_core.tools import ASK_HUMAN_PARAMETERS, ASK_HUMAN_TOOL, HumanWait, ToolOutcome, openai_tool_schema
from foundation.errors import ToolServerError
from registry import HumanRequestStore
from toolserver.service.principal import Principal
from toolserver.service.tools import ToolService
from toolserver.tools.formats import to_openai

__all__ = ["MEMORY_TOOLS", "ServerToolExecutor"]

_REMEMBER = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "the fact or lesson to keep"}},
    "required": ["text"],
    "additionalProperties": False,
}
_RECALL = {
    "type": "object",
    "properties": {"query": {"type": "string"}, "k": {"type": "integer", "minimum": 1, "maximum": 20}},
    "required": ["query"],
    "additionalProperties": False,
}
MEMORY_TOOLS = ("remember", "recall")


class ServerToolExecutor:
    """Implements agent_core's ToolExecutor over the tool service, for one run of one namespace."""

    def __init__(
        self,
        tools: ToolService,
        humans: HumanRequestStore,
        principal: Principal,
        *,
        run_id: str,
        session_id: str | None,
        tool_names: list[str],
        memory: Any | None = None,
        memory_scope: str | None = None,
        human_timeout_s: float | None = None,
    ) -> None:
        self.tools = tools
        self.humans = humans
        self.principal = principal
        self.run_id = run_id
        self.session_id = session_id
        self.tool_names = tool_names
        self.memory = memory
        self.memory_scope = memory_scope
        self.human_timeout_s = human_timeout_s
        self._schemas: list[dict[str, Any]] = []

    async def prepare(self) -> None:
        """Look up the agent's tools once, before the loop asks for their schemas."""
        schemas = []
        for name in self.tool_names:
            if name in (ASK_HUMAN_TOOL, *MEMORY_TOOLS):
                continue
            schemas.append(to_openai(await self.tools.get(self.principal, name)))
        schemas.append(
            openai_tool_schema(
                ASK_HUMAN_TOOL,
                "Ask a human for help or a decision; the run pauses until they answer.",
                ASK_HUMAN_PARAMETERS,
            )
        )
        if self.memory is not None and self.memory_scope:
            schemas.append(
                openai_tool_schema("remember", "Keep a fact or lesson in long-term memory.", _REMEMBER)
            )
            schemas.append(openai_tool_schema("recall", "Search long-term memory.", _RECALL))
        self._schemas = schemas

    def tool_schemas(self) -> list[dict[str, Any]]:
        return self._schemas

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        try:
            if name == ASK_HUMAN_TOOL:
                return await self._ask_human(arguments)
            if name in MEMORY_TOOLS:
                return await self._memory(name, arguments)
            response = await self.tools.call(self.principal, name, arguments, self.session_id)
        except ToolServerError as exc:
            return ToolOutcome.failure(json.dumps({"error": exc.to_dict()}))
        if response.get("ok"):
            return ToolOutcome.success(json.dumps(response.get("result"), default=str))
        return ToolOutcome.failure(json.dumps({"error": response.get("error")}, default=str))

    async def _ask_human(self, arguments: dict[str, Any]) -> ToolOutcome:
        question = str(arguments.get("question", ""))
        context = {"context": arguments.get("context"), "run_id": self.run_id}
        deadline = time.time() + self.human_timeout_s if self.human_timeout_s else None
        request = await asyncio.to_thread(
            self.humans.create,
            self.principal.namespace,
            question,
            run_id=self.run_id,
            context=context,
            deadline=deadline,
        )
        return ToolOutcome.waiting(HumanWait(request.id, question, arguments.get("context")))

    async def _memory(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        if self.memory is None or not self.memory_scope:
            return ToolOutcome.failure("memory is not enabled for this agent")
        if name == "remember":
            item = await self.memory.add(self.principal.namespace, self.memory_scope, str(arguments["text"]))
            return ToolOutcome.success(json.dumps({"remembered": item.id}))
        items = await self.memory.search(
            self.principal.namespace, self.memory_scope, str(arguments["query"]), int(arguments.get("k", 5))
        )
        return ToolOutcome.success(json.dumps([{"text": i.text, "score": i.score} for i in items]))
