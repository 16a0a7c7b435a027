"""Tools: register, list in three formats, search, and call with validation, tenancy and audit."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from agent_core.tools import HumanWait
from foundation.errors import Forbidden, NotFound, ToolServerError, ValidationFailed
from foundation.schema.limits import run_import, run_validation
from foundation.schema.validation import check_schema, validate_arguments
from registry import AuditStore, HumanRequestStore, SecretStore, ToolStore
from sandbox.base import SandboxInfo
from toolserver.api.requests import SessionCreate, ToolCreate
from toolserver.service.principal import Principal
from toolserver.service.session_sandbox import SessionSandbox
from toolserver.service.sessions import SessionService
from toolserver.tools.base import (
    CallContext,
    ToolCallFailed,
    ToolDraft,
    ToolRunner,
    ToolRunners,
    ToolSpec,
    check_tool_name,
)
from toolserver.tools.builtin import BuiltinRunner
from toolserver.tools.deployment import ServelessDeployments
from toolserver.tools.formats import render
from toolserver.tools.http import HttpToolRunner
from toolserver.tools.mcp import McpToolConfig, McpToolRunner
from toolserver.tools.openapi import import_document
from toolserver.tools.search import ToolIndex

__all__ = ["ToolService"]

# The request fields every kind shares; the rest are the kind's own (`ToolDraft.fields`).
_COMMON_FIELDS = frozenset({"name", "description", "kind", "parameters"})


def _spec_of(record: Any) -> ToolSpec:
    return ToolSpec(
        name=record.name,
        description=record.description,
        kind=record.kind,
        parameters=record.parameters,
        config=record.config,
        namespace=record.namespace,
        version=record.version,
    )


def _build_spec(runner: ToolRunner, draft: ToolDraft) -> ToolSpec:
    """The runner's spec for `draft`, its parameters checked first; slow: off the event loop."""
    if draft.parameters is not None:
        draft = dataclasses.replace(draft, parameters=check_schema(draft.parameters))
    return runner.build_spec(draft)


class ToolService:
    """The tools a namespace sees (builtin and its own): register, list, search, call, delete.

    What differs by kind (registration checks, secrets, sandbox, deployment, shared tools) is asked of the
    kind's `ToolRunner`; a call is schema-checked, tenant-scoped and audited the same way for every kind.
    """

    def __init__(
        self,
        tools: ToolStore,
        secrets: SecretStore,
        audit: AuditStore,
        sessions: SessionService,
        runners: Mapping[str, ToolRunner],
        humans: HumanRequestStore,
    ) -> None:
        self.tools = tools
        self.humans = humans
        self.secrets = secrets
        self.audit = audit
        self.sessions = sessions
        # Deployment tools are refused with a reason unless the server on Ray Serve passes its runner.
        defaults = {"builtin": BuiltinRunner(humans), "deployment": ServelessDeployments()}
        self.runners = ToolRunners({**defaults, **runners})
        self._shared = {spec.name: spec for spec in self.runners.shared_tools()}
        self._tool_sessions: dict[str, str] = {}
        self._tool_session_lock = asyncio.Lock()

    # -- registration --------------------------------------------------------------------------------

    async def register(self, principal: Principal, body: ToolCreate) -> dict[str, Any]:
        """Check and store one tool of the caller's namespace (its runner installs it first)."""
        name = check_tool_name(body.name)
        if name in self._shared:
            raise ValidationFailed(f"{name} is a builtin tool name", field="name")
        runner = self.runners[body.kind]
        draft = ToolDraft(
            name=name,
            kind=body.kind,
            namespace=principal.namespace,
            description=body.description,
            parameters=body.parameters,
            fields=body.model_dump(exclude=set(_COMMON_FIELDS)),
            is_admin=principal.is_admin,
        )
        # A schema check costs up to a second or so (meta-schema, RE2 compiles): off the event loop.
        spec = await run_validation(principal.namespace, _build_spec, runner, draft)
        await runner.install(spec)
        return (await self.register_specs(principal, [spec]))[0]

    async def import_openapi(
        self, principal: Principal, document: dict[str, Any] | str, base_url: str | None, prefix: str
    ) -> builtins.list[dict[str, Any]]:
        """Every operation of an OpenAPI document as an `http` tool of the caller."""
        # Parsing and $ref expansion are bounded (size, time) but can take seconds: off the event loop.
        specs = await run_import(
            principal.namespace, import_document, document, base_url=base_url, prefix=prefix
        )
        if specs:  # one server for all operations
            http = self.runners.of("http", HttpToolRunner)
            http.check_destination(specs[0].config["url"], field="base_url")
        return await self.register_specs(principal, specs)

    async def import_mcp(
        self,
        principal: Principal,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, str] | None = None,
        prefix: str = "",
        timeout_s: float | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """List an MCP server's tools and register each as an `mcp` tool of the caller; all or nothing."""
        runner = self.runners.of("mcp", McpToolRunner)
        endpoint = McpToolConfig.endpoint(url, headers, secret_headers, timeout_s)
        secrets = await self._secrets(principal, builtins.list(endpoint.secret_headers.values()))
        specs = await runner.import_tools(
            endpoint, secrets, prefix=prefix, namespace=principal.namespace, reserved=set(self._shared)
        )
        return await self.register_specs(principal, specs)

    async def register_specs(self, principal: Principal, specs: list[ToolSpec]) -> list[dict[str, Any]]:
        """Store checked specs (an import's tools) in the caller's namespace; returns them as listed."""
        out = []
        for spec in specs:
            record = await asyncio.to_thread(
                self.tools.register,
                principal.namespace,
                spec.name,
                kind=spec.kind,
                description=spec.description,
                parameters=spec.parameters,
                config=spec.config,
            )
            out.append(render([_spec_of(record)], "native")[0])
        return out

    # -- reading -------------------------------------------------------------------------------------

    async def visible(self, principal: Principal) -> builtins.list[ToolSpec]:
        """The shared tools, then the namespace's own."""
        records = await asyncio.to_thread(self.tools.list, principal.namespace)
        return [*self._shared.values(), *(_spec_of(r) for r in records)]

    async def list(self, principal: Principal, format: str) -> builtins.list[dict[str, Any]]:
        """Every visible tool in `format` (native, openai or mcp)."""
        return render(await self.visible(principal), format)

    async def search(self, principal: Principal, query: str, k: int) -> builtins.list[dict[str, Any]]:
        """The `k` visible tools that best match `query`, with their scores."""
        index = ToolIndex.build(await self.visible(principal))
        return [
            {**render([spec], "native")[0], "score": round(score, 4)}
            for spec, score in index.search(query, k)
        ]

    async def get(self, principal: Principal, name: str) -> ToolSpec:
        """One visible tool; NotFound unless shared or the caller's own."""
        if name in self._shared:
            return self._shared[name]
        record = await asyncio.to_thread(self.tools.get, principal.namespace, name)
        return _spec_of(record)

    async def delete(self, principal: Principal, name: str) -> None:
        """Remove one of the caller's tools; its runner uninstalls it after."""
        if name in self._shared:
            raise Forbidden(f"{name} is a builtin tool and cannot be removed")
        spec = await self.get(principal, name)
        await asyncio.to_thread(self.tools.delete, principal.namespace, name)
        runner = self.runners.get(spec.kind)
        if runner is not None:
            await runner.uninstall(spec)

    # -- calling -------------------------------------------------------------------------------------

    async def call(
        self, principal: Principal, name: str, arguments: dict[str, Any], session_id: str | None
    ) -> dict[str, Any]:
        """Validate, run, audit. A failing tool is a result with ok=false; bad input is an error."""
        started = time.perf_counter()
        status, error_type = "ok", None
        response: dict[str, Any] = {}
        try:
            spec = await self.get(principal, name)
            arguments = await run_validation(
                principal.namespace, validate_arguments, spec.parameters, arguments
            )
            runner = self.runners[spec.kind]
            context = await self._context(principal, runner, spec, session_id)
            try:
                result = await runner.run(spec, arguments, context)
            except ToolCallFailed as exc:
                status, error_type = "error", exc.type
                response = {"ok": False, "result": None, "error": exc.to_dict()}
            else:
                if isinstance(result, HumanWait):
                    status = "waiting_human"
                    response = {"ok": True, "status": status, "request_id": result.request_id, "result": None}
                else:
                    response = {"ok": True, "result": result}
        except ToolServerError as exc:
            status, error_type = "rejected", exc.type
            raise
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            response["duration_ms"] = round(duration_ms, 3)
            await self._audit(
                principal, name, session_id, status, error_type, duration_ms, arguments, response
            )
        return response

    async def _context(
        self, principal: Principal, runner: ToolRunner, spec: ToolSpec, session_id: str | None
    ) -> CallContext:
        secrets = await self._secrets(principal, builtins.list(runner.secret_names(spec)))
        sandbox = None
        if runner.needs_sandbox(spec):
            session_id = session_id or await self._tool_session(principal)
            view = await self.sessions.verified_view(principal, session_id)  # no registry read per call
            info = SandboxInfo(
                session_id=view["id"],
                container_id="",
                owner=principal.namespace,
                image=view["image"],
                node_id=view["node_id"],
                network=view["network"],
                limits=self.sessions.default_limits,
                created_at=view["created_at"],
            )
            sandbox = SessionSandbox(self.sessions, principal, info)
        return CallContext(
            namespace=principal.namespace, session_id=session_id, sandbox=sandbox, secrets=secrets
        )

    async def _secrets(self, principal: Principal, names: builtins.list[str]) -> Mapping[str, str]:
        """The caller's secrets of these names (none asked: none read)."""
        if not names:
            return {}
        resolved: Mapping[str, str] = await asyncio.to_thread(
            self.secrets.resolve, principal.namespace, names
        )
        return resolved

    async def _tool_session(self, principal: Principal) -> str:
        """The namespace's own tool sandbox, used when a sandboxed tool is called without a session."""
        async with self._tool_session_lock:
            known = self._tool_sessions.get(principal.namespace)
            if known is not None:
                try:
                    await self.sessions.get(principal, known)
                    return known
                except NotFound:
                    pass
            created = await self.sessions.create(principal, SessionCreate())
            self._tool_sessions[principal.namespace] = created["id"]
            return str(created["id"])

    async def _audit(
        self,
        principal: Principal,
        tool: str,
        session_id: str | None,
        status: str,
        error_type: str | None,
        duration_ms: float,
        arguments: Any,
        response: Any,
    ) -> None:
        await asyncio.to_thread(
            self.audit.record,
            namespace=principal.namespace,
            key_id=principal.key_id,
            tool=tool,
            session_id=session_id,
            status=status,
            error_type=error_type,
            duration_ms=duration_ms,
            request_bytes=len(json.dumps(arguments, default=str)),
            response_bytes=len(json.dumps(response, default=str)),
        )
