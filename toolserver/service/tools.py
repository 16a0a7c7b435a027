"""Tools: register, list in three formats, search, and call with validation, tenancy and audit."""

from __future__ import annotations

import asyncio
import builtins
import json
import time
from typing import Any

from agent_core.tools import ASK_HUMAN_TOOL
from foundation.errors import Forbidden, NotFound, ToolServerError, UserError, ValidationFailed
from foundation.schema.limits import run_import, run_validation
from foundation.schema.validation import check_schema, validate_arguments
from registry import AuditStore, HumanRequestStore, SecretStore, ToolStore
from sandbox.base import SandboxInfo
from toolserver.http.models import SessionCreate, ToolCreate
from toolserver.service.builtin import BUILTIN_TOOLS, BuiltinRunner
from toolserver.service.principal import Principal
from toolserver.service.session_sandbox import SessionSandbox
from toolserver.service.sessions import SessionService
from toolserver.tools.base import CallContext, ToolCallFailed, ToolRunner, ToolSpec, check_tool_name
from toolserver.tools.formats import render
from toolserver.tools.http import HttpToolConfig, HttpToolRunner
from toolserver.tools.openapi import import_document
from toolserver.tools.schema import derive_schema
from toolserver.tools.search import ToolIndex

__all__ = ["ToolService"]

_BUILTIN = {spec.name: spec for spec in BUILTIN_TOOLS}


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


class ToolService:
    def __init__(
        self,
        tools: ToolStore,
        secrets: SecretStore,
        audit: AuditStore,
        sessions: SessionService,
        runners: dict[str, ToolRunner],
        humans: HumanRequestStore,
    ) -> None:
        self.tools = tools
        self.humans = humans
        self.secrets = secrets
        self.audit = audit
        self.sessions = sessions
        self.runners = {"builtin": BuiltinRunner(), **runners}
        self._tool_sessions: dict[str, str] = {}
        self._tool_session_lock = asyncio.Lock()

    # -- registration --------------------------------------------------------------------------------

    async def register(self, principal: Principal, body: ToolCreate) -> dict[str, Any]:
        name = check_tool_name(body.name)
        if name in _BUILTIN:
            raise ValidationFailed(f"{name} is a builtin tool name", field="name")
        # A schema check costs up to a second or so (meta-schema, RE2 compiles): off the event loop.
        spec = await run_validation(principal.namespace, self._spec_from_body, principal, body)
        if spec.kind == "deployment":
            await self.runners["deployment"].deploy(spec)  # type: ignore[attr-defined]
        return (await self.register_specs(principal, [spec]))[0]

    async def import_openapi(
        self, principal: Principal, document: dict[str, Any] | str, base_url: str | None, prefix: str
    ) -> builtins.list[dict[str, Any]]:
        # Parsing and $ref expansion are bounded (size, time) but can take seconds: off the event loop.
        specs = await run_import(
            principal.namespace, import_document, document, base_url=base_url, prefix=prefix
        )
        runner = self.runners.get("http")
        if specs and isinstance(runner, HttpToolRunner):
            runner.policy.check_url(specs[0].config["url"], field="base_url")  # one server for all operations
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

    def _spec_from_body(self, principal: Principal, body: ToolCreate) -> ToolSpec:
        config: dict[str, Any]
        description = body.description
        parameters = check_schema(body.parameters) if body.parameters is not None else None
        if body.kind == "python":
            if not body.source:
                raise ValidationFailed("a python tool needs its source", field="source")
            derived = derive_schema(body.source, body.function)
            parameters = parameters or derived.parameters
            description = description or derived.description
            config = {"source": body.source, "function": derived.name, "timeout_s": body.timeout_s or 30.0}
        elif body.kind == "http":
            if not body.url:
                raise ValidationFailed("an http tool needs a url", field="url")
            config = {
                "url": body.url,
                "method": body.method.upper(),
                "headers": body.headers or {},
                "secret_headers": body.secret_headers or {},
                "query": body.query or [],
                "body": "remaining" if body.body == "all" else body.body,
                "timeout_s": body.timeout_s or 30.0,
            }
            if body.max_response_bytes:
                config["max_response_bytes"] = body.max_response_bytes
            if body.follow_redirects:
                config["follow_redirects"] = True
            checked = HttpToolConfig.from_dict(config)  # a broken config is refused now, not at every call
            runner = self.runners.get("http")
            if isinstance(runner, HttpToolRunner):
                runner.policy.check_url(body.url, field="url")
                runner.check_response_cap(checked.max_response_bytes, field="max_response_bytes")
        else:  # deployment: trusted code on the server's path, so only an admin may add one
            if not principal.is_admin:
                raise Forbidden("only an admin key may register deployment tools")
            if not body.import_path:
                raise ValidationFailed(
                    "a deployment tool needs import_path (module:attribute)", field="import_path"
                )
            config = {
                "import_path": body.import_path,
                "num_replicas": body.num_replicas or 1,
                "ray_actor_options": body.ray_actor_options or {"num_cpus": 0.1},
                "autoscaling": body.autoscaling,
                "timeout_s": body.timeout_s or 60.0,
            }
        if parameters is None:
            parameters = {"type": "object", "properties": {}, "additionalProperties": True}
        spec = ToolSpec(
            name=body.name,
            description=description,
            kind=body.kind,
            parameters=parameters,
            config=config,
            namespace=principal.namespace,
        )
        if body.kind == "deployment":
            runner = self.runners.get("deployment")
            if runner is None:
                raise UserError("deployment tools need the server running on Ray Serve")
            runner.prepare(spec)  # type: ignore[attr-defined]
        return spec

    # -- reading -------------------------------------------------------------------------------------

    async def visible(self, principal: Principal) -> builtins.list[ToolSpec]:
        records = await asyncio.to_thread(self.tools.list, principal.namespace)
        return [*BUILTIN_TOOLS, *(_spec_of(r) for r in records)]

    async def list(self, principal: Principal, format: str) -> builtins.list[dict[str, Any]]:
        return render(await self.visible(principal), format)

    async def search(self, principal: Principal, query: str, k: int) -> builtins.list[dict[str, Any]]:
        index = ToolIndex.build(await self.visible(principal))
        return [
            {**render([spec], "native")[0], "score": round(score, 4)}
            for spec, score in index.search(query, k)
        ]

    async def get(self, principal: Principal, name: str) -> ToolSpec:
        if name in _BUILTIN:
            return _BUILTIN[name]
        record = await asyncio.to_thread(self.tools.get, principal.namespace, name)
        return _spec_of(record)

    async def delete(self, principal: Principal, name: str) -> None:
        if name in _BUILTIN:
            raise Forbidden(f"{name} is a builtin tool and cannot be removed")
        spec = await self.get(principal, name)
        await asyncio.to_thread(self.tools.delete, principal.namespace, name)
        if spec.kind == "deployment" and "deployment" in self.runners:
            await self.runners["deployment"].remove(spec)  # type: ignore[attr-defined]

    # -- calling -------------------------------------------------------------------------------------

    async def call(
        self, principal: Principal, name: str, arguments: dict[str, Any], session_id: str | None
    ) -> dict[str, Any]:
        """Validate, run, audit. A failing tool is a result with ok=false; bad input is an error."""
        started = time.perf_counter()
        status, error_type, response = "ok", None, {}
        try:
            spec = await self.get(principal, name)
            arguments = await run_validation(
                principal.namespace, validate_arguments, spec.parameters, arguments
            )
            if spec.name == ASK_HUMAN_TOOL:
                request = await asyncio.to_thread(
                    self.humans.create,
                    principal.namespace,
                    arguments["question"],
                    context={"context": arguments.get("context"), "session_id": session_id},
                )
                status = "waiting_human"
                response = {"ok": True, "status": "waiting_human", "request_id": request.id, "result": None}
                return response
            context = await self._context(principal, spec, session_id)
            try:
                result = await self.runners[spec.kind].run(spec, arguments, context)
                response = {"ok": True, "result": result}
            except ToolCallFailed as exc:
                status, error_type = "error", exc.type
                response = {"ok": False, "result": None, "error": exc.to_dict()}
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

    async def _context(self, principal: Principal, spec: ToolSpec, session_id: str | None) -> CallContext:
        secrets: dict[str, str] = {}
        if spec.kind in ("http", "mcp") and spec.config.get("secret_headers"):
            names = list(spec.config["secret_headers"].values())
            secrets = await asyncio.to_thread(self.secrets.resolve, principal.namespace, names)
        sandbox = None
        if spec.kind in ("builtin", "python"):
            session_id = session_id or await self._tool_session(principal)
            view = await self.sessions.get(principal, session_id)
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
