"""E2B's control API (`E2B_API_URL`): create, connect, list, get, kill, set timeout, pause, as sessions of ours.

An E2B sandbox is one of the caller's sessions: the same namespace, caps, limits, expiry and images.
E2B's `timeout` is the session's idle TTL; setting it again resets the idle clock and may not go past
the TTL the sandbox was created with (the node keeps that one). A pause is the session's pause (the memory
is kept where the runtime can checkpoint, whatever `memory` asks); connect and resume resume it.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundation.errors import UserError
from toolserver.api.requests import SessionCreate
from toolserver.e2b._auth import control_principal
from toolserver.e2b._records import E2BRecord
from toolserver.e2b._views import TemplateMap, created_view, detail_view, e2b_state
from toolserver.e2b.errors import E2BConflict, E2BUnsupported

__all__ = ["control_routes"]

log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 300


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NewSandbox(_Body):
    """`POST /sandboxes` and `/v2/sandboxes` (NewSandboxV2): the fields this server reads."""

    template_id: str = Field("base", alias="templateID", max_length=256)
    timeout: int = Field(DEFAULT_TIMEOUT_S, gt=0)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    env_vars: dict[str, str] = Field(default_factory=dict, alias="envVars", max_length=256)
    allow_internet_access: bool | None = Field(None, alias="allowInternetAccess")
    network: dict[str, Any] | None = None
    auto_pause: bool = Field(False, alias="autoPause")
    mcp: Any = None
    volume_mounts: list[Any] | None = Field(None, alias="volumeMounts")


class Timeout(_Body):
    timeout: int | None = Field(None, gt=0)


class PauseBody(_Body):
    """`POST /sandboxes/{id}/pause` (SandboxPauseRequest): read and checked, not obeyed (the runtime decides)."""

    memory: bool | None = None
    require_healthy_guest: bool | None = Field(None, alias="requireHealthyGuest")


class ResumeBody(_Body):
    """`POST /sandboxes/{id}/resume` (ResumedSandbox): E2B's older way to resume."""

    timeout: int | None = Field(None, gt=0)
    auto_pause: bool = Field(False, alias="autoPause")


def _parse(model: type[_Body], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        raise UserError(
            f"{field}: {first.get('msg')}" if field else str(first.get("msg")), field=field
        ) from None


def _network(body: NewSandbox) -> Any:
    allow_out = (body.network or {}).get("allowOut")
    if allow_out:
        return {"egress": [str(name) for name in allow_out]}
    if body.network and body.network.get("denyOut"):
        raise E2BUnsupported(
            "network.denyOut is not supported: sandboxes have no network unless allowOut names hosts"
        )
    return "bridge" if body.allow_internet_access else "none"


class ControlAPI:
    """The handlers; `svc` is the server's Services."""

    def __init__(self, svc: Any, templates: TemplateMap, records: Any) -> None:
        self.svc, self.templates, self.records = svc, templates, records

    async def _who(self, request: Request) -> Any:
        return await control_principal(self.svc.auth, request.headers)

    @staticmethod
    def _key(request: Request) -> str:
        key = request.headers.get("x-api-key", "").strip()
        return key or request.headers.get("authorization", "").partition(" ")[2].strip()

    async def create(self, request: Request) -> Response:
        who = await self._who(request)
        body = _parse(NewSandbox, await request.body())
        for name, given in (
            ("mcp", body.mcp),
            ("volumeMounts", body.volume_mounts),
            ("autoPause", body.auto_pause),
        ):
            if given:
                raise E2BUnsupported(f"{name} is not supported by this server")
        image = self.templates.image(body.template_id)
        spec = SessionCreate.model_validate(
            {"image": image, "ttl_s": body.timeout, "network": _network(body)}
        )
        session = await self.svc.sessions.create(who, spec)
        record = E2BRecord(body.template_id, body.metadata, body.env_vars)
        try:
            await self.records.save(who, session["id"], record)
        except BaseException:
            await self.svc.sessions.delete(who, session["id"])
            raise
        log.info(
            "e2b sandbox %s created for %s (template %s)", session["id"], who.namespace, body.template_id
        )
        return JSONResponse(created_view(session, record, self._key(request)), status_code=201)

    async def connect(self, request: Request) -> Response:
        """The sandbox, resumed first when it is paused (201 then, as E2B answers; 200 when it was running)."""
        who = await self._who(request)
        sandbox_id = request.path_params["sandbox_id"]
        body = _parse(Timeout, await request.body())
        was_paused = (await self.svc.sessions.get(who, sandbox_id)).get("status") == "paused"
        session = await self._touch(who, sandbox_id, body.timeout)  # any call on its node resumes it
        record = await self.records.get(who, sandbox_id)
        view = created_view(session, record, self._key(request))
        return JSONResponse(view, status_code=201 if was_paused else 200)

    async def pause(self, request: Request) -> Response:
        """Pause the sandbox (204); 409 when it is paused already, as E2B answers."""
        who = await self._who(request)
        sandbox_id = request.path_params["sandbox_id"]
        _parse(PauseBody, await request.body())
        if (await self.svc.sessions.get(who, sandbox_id)).get("status") == "paused":
            raise E2BConflict(f"sandbox {sandbox_id} is paused already")
        await self.svc.sessions.pause(who, sandbox_id)
        log.info("e2b sandbox %s paused by %s", sandbox_id, who.namespace)
        return Response(status_code=204)

    async def resume(self, request: Request) -> Response:
        """Resume a paused sandbox (201); 409 when it is running, as E2B answers."""
        who = await self._who(request)
        sandbox_id = request.path_params["sandbox_id"]
        body = _parse(ResumeBody, await request.body())
        if body.auto_pause:
            raise E2BUnsupported("autoPause is not supported by this server (the operator sets idle pausing)")
        if (await self.svc.sessions.get(who, sandbox_id)).get("status") != "paused":
            raise E2BConflict(f"sandbox {sandbox_id} is not paused")
        session = await self._touch(who, sandbox_id, body.timeout)  # checks the timeout, then resumes
        record = await self.records.get(who, sandbox_id)
        return JSONResponse(created_view(session, record, self._key(request)), status_code=201)

    async def get(self, request: Request) -> Response:
        who = await self._who(request)
        sandbox_id = request.path_params["sandbox_id"]
        session = await self.svc.sessions.get(who, sandbox_id)
        record = await self.records.get(who, sandbox_id)
        return JSONResponse(detail_view(session, record, self._key(request)))

    async def list(self, request: Request) -> Response:
        who = await self._who(request)
        states = set(filter(None, request.query_params.get("state", "").split(",")))
        wanted = dict(urllib.parse.parse_qsl(request.query_params.get("metadata", "")))
        out = []
        for session in await self.svc.sessions.list(who):
            if states and e2b_state(session) not in states:
                continue
            try:
                record = await self.records.get(who, session["id"])
            except UserError:
                continue  # gone meanwhile
            if all(record.metadata.get(k) == v for k, v in wanted.items()):
                out.append(detail_view(session, record))
        return JSONResponse(out)

    async def kill(self, request: Request) -> Response:
        who = await self._who(request)
        sandbox_id = request.path_params["sandbox_id"]
        await self.svc.sessions.delete(who, sandbox_id)
        self.records.forget(who, sandbox_id)
        log.info("e2b sandbox %s killed by %s", sandbox_id, who.namespace)
        return Response(status_code=204)

    async def set_timeout(self, request: Request) -> Response:
        who = await self._who(request)
        body = _parse(Timeout, await request.body())
        await self._touch(who, request.path_params["sandbox_id"], body.timeout)
        return Response(status_code=204)

    async def refresh(self, request: Request) -> Response:
        who = await self._who(request)
        await self._touch(who, request.path_params["sandbox_id"], None)
        return Response(status_code=204)

    async def metrics(self, request: Request) -> Response:
        who = await self._who(request)
        await self.svc.sessions.get(who, request.path_params["sandbox_id"])
        return JSONResponse([])

    async def unsupported(self, request: Request) -> Response:
        await self._who(request)
        what = request.url.path.rsplit("/", 1)[-1]
        raise E2BUnsupported(
            f"{what} is not supported by this server's E2B API yet (snapshots and forks are in its own API:"
            " /v1/sessions/{id}/snapshots)"
        )

    async def _touch(self, who: Any, sandbox_id: str, timeout: int | None) -> dict[str, Any]:
        """Reset the sandbox's idle clock (a call on its node); a timeout past its TTL is refused."""
        session = await self.svc.sessions.get(who, sandbox_id)
        ttl = float(session.get("ttl_s") or 0)
        if timeout is not None and ttl and timeout > ttl:
            raise UserError(
                f"timeout {timeout}s is longer than this sandbox's {ttl:g}s idle TTL, which this server cannot"
                " extend; create the sandbox with a longer timeout",
                field="timeout",
            )
        await self.svc.sessions._on_node(who, sandbox_id, lambda node: node.get(sandbox_id))
        return dict(await self.svc.sessions.get(who, sandbox_id))


def control_routes(api: ControlAPI) -> list[Route]:
    """The control API's routes, relative to the front's mount point."""
    one = "/sandboxes/{sandbox_id}"
    return [
        Route("/sandboxes", api.create, methods=["POST"]),
        Route("/v2/sandboxes", api.create, methods=["POST"]),
        Route("/sandboxes", api.list, methods=["GET"]),
        Route("/v2/sandboxes", api.list, methods=["GET"]),
        Route(one, api.get, methods=["GET"]),
        Route(one, api.kill, methods=["DELETE"]),
        Route(one + "/connect", api.connect, methods=["POST"]),
        Route("/v2" + one + "/connect", api.connect, methods=["POST"]),
        Route(one + "/timeout", api.set_timeout, methods=["POST"]),
        Route(one + "/refreshes", api.refresh, methods=["POST"]),
        Route(one + "/metrics", api.metrics, methods=["GET"]),
        Route(one + "/pause", api.pause, methods=["POST"]),
        Route(one + "/resume", api.resume, methods=["POST"]),
        Route(one + "/fork", api.unsupported, methods=["POST"]),
        Route(one + "/snapshots", api.unsupported, methods=["POST"]),
        Route(one + "/network", api.unsupported, methods=["PUT"]),
    ]
