"""Import an external MCP server's tools: each becomes an `mcp` tool here that the server proxies.

How the proxy works, and why this way. An imported tool is a registry record of kind `mcp` whose config names
the remote endpoint (`url`, `headers`, `secret_headers`) and the remote tool's own name. `McpToolRunner` calls
it with the official MCP client over Streamable HTTP: one short connection per call, so no MCP session has to
survive across calls or replicas. That is a network call from the server, like an `http` tool's, and never
user code in the server process (invariant 1).

A stdio MCP server is a command, i.e. code. The server must not run it, and a sandbox cannot either in general:
the sandbox image holds only the guest daemon and a few packages (not the MCP SDK, not node/npx), and a sandbox
has no network to fetch them. So a stdio server runs where its user chose to run it: `toolserver tools
import-mcp --command ...` (toolserver/cli/mcp.py) starts it on the user's machine, serves it on a local
Streamable HTTP bridge guarded by a random bearer token, and imports the bridge's URL here. The tools work
while the bridge runs and the server can reach it (on one machine: always; on a cluster: give the bridge an
address the Ray nodes can reach), and the CLI removes them when it stops.

Outgoing requests go to a URL the caller chose, as `http` tools do, under the same egress policy
(`toolserver.outbound.egress`: public addresses unless the operator allows more); the import lists the remote tools from
the server itself, so an unreachable or refused URL fails at import time, not at the first call.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
import mcp_types as types
from fastapi import APIRouter, Depends
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field

from foundation.errors import PayloadTooLarge, ToolServerError, UserError, ValidationFailed
from foundation.schema.limits import ExpansionBudget, run_import
from foundation.schema.validation import check_schema
from toolserver.http.mcp_endpoint import HOPS_HEADER, current_hops
from toolserver.http.routes.deps import caller, services
from toolserver.outbound.body import DEFAULT_MAX_OUTBOUND_BYTES, ResponseTooLarge, bounded_transport
from toolserver.outbound.egress import EgressDenied, EgressPolicy, Pinner
from toolserver.service.builtin import BUILTIN_TOOLS
from toolserver.service.principal import Principal
from toolserver.tools.base import (
    CallContext,
    ToolCallFailed,
    ToolRunner,
    ToolSpec,
    ToolTimeout,
    check_tool_name,
    config_str_map,
    secret_header_values,
)

if TYPE_CHECKING:
    from toolserver.service.tools import ToolService

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MAX_IMPORTED_TOOLS",
    "MAX_LIST_PAGES",
    "McpImport",
    "McpToolConfig",
    "McpToolRunner",
    "import_mcp_tools",
    "router",
]

DEFAULT_TIMEOUT_S = 30.0
MAX_IMPORTED_TOOLS = 256
MAX_LIST_PAGES = 50  # a server that pages on and on (or a page at a time) is refused past this many
_MAX_DESCRIPTION = 8192
_MAX_ERROR = 2000

HttpClientFactory = Callable[[Mapping[str, str], float], httpx2.AsyncClient]


class GuardedTransport2(httpx2.AsyncBaseTransport):
    """The MCP SDK's httpx2 twin of `toolserver.outbound.egress.GuardedTransport`: only where the policy allows."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._pinner = Pinner(policy, httpx2)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response: httpx2.Response = await self._pinner.send(request)
        return response

    async def aclose(self) -> None:
        await self._pinner.aclose()


def guarded_http_client(
    policy: EgressPolicy,
    max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
    on_overflow: Callable[[], object] | None = None,
) -> HttpClientFactory:
    """A factory of httpx2 clients that connect only where `policy` allows (environment proxies ignored) and
    read no body past `max_body_bytes` (`on_overflow` is called when one tries)."""

    def make(headers: Mapping[str, str], timeout_s: float) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            headers=dict(headers),
            timeout=httpx2.Timeout(timeout_s),
            transport=bounded_transport(GuardedTransport2(policy), httpx2, max_body_bytes, on_overflow),
            trust_env=False,
        )

    return make


@dataclass(frozen=True)
class McpToolConfig:
    """The `config` of an `mcp` tool, checked; build it with `from_dict`."""

    url: str
    tool: str
    headers: Mapping[str, str] = field(default_factory=dict)
    secret_headers: Mapping[str, str] = field(default_factory=dict)  # header -> secret name
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> McpToolConfig:
        """Check a tool's config; raise ValidationFailed(field="config.<key>") naming what is wrong."""
        unknown = sorted(set(config) - set(cls.__dataclass_fields__))
        if unknown:
            raise _bad(unknown[0], f"unknown mcp tool config key {unknown[0]!r}")
        tool = config.get("tool")
        if not isinstance(tool, str) or not tool:
            raise _bad("tool", "an mcp tool needs the remote tool's name")
        timeout_s = config.get("timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s <= 600:
            raise _bad("timeout_s", "timeout_s must be a number of seconds in (0, 600]")
        return cls(
            url=_check_url(config.get("url")),
            tool=tool,
            headers=config_str_map(config, "headers"),
            secret_headers=config_str_map(config, "secret_headers"),
            timeout_s=float(timeout_s),
        )

    def request_headers(self, secrets: Mapping[str, str]) -> dict[str, str]:
        """The plain headers plus each secret header's value from the caller's namespace."""
        return {**self.headers, **secret_header_values(self.secret_headers, secrets)}


class McpToolRunner(ToolRunner):
    """Calls `mcp` tools on their remote MCP server; `http_client` makes each call's httpx2 client.

    The default factory connects only where `policy` allows (default: public addresses) and reads no response,
    page or SSE event past `max_body_bytes` (the server's `TOOLSERVER_MAX_OUTBOUND_BODY_MB`): a call whose
    server sends more ends at once with `ResponseTooLarge`. A factory passed in is used as it is.
    """

    def __init__(
        self,
        http_client: HttpClientFactory | None = None,
        *,
        policy: EgressPolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self.max_body_bytes = max_body_bytes
        self._http_client = http_client

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        config = McpToolConfig.from_dict(tool.config)
        headers = {**config.request_headers(context.secrets), HOPS_HEADER: str(current_hops() + 1)}
        what = f"calling {config.tool!r} on the MCP server at {config.url}"
        try:
            with anyio.fail_after(config.timeout_s):
                async with self._connect(config.url, headers, config.timeout_s) as client:
                    result = await client.call_tool(config.tool, arguments)
        except TimeoutError:
            raise ToolTimeout(
                f"the MCP server at {config.url} did not answer within {config.timeout_s:g} s",
                timeout_s=config.timeout_s,
            ) from None
        except Exception as exc:
            raise _failure(what, exc) from None
        return _result_value(result)

    async def list_tools(
        self, url: str, headers: Mapping[str, str], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[types.Tool]:
        """Every tool the MCP server at `url` lists, all pages; more than MAX_IMPORTED_TOOLS tools or
        MAX_LIST_PAGES pages is refused."""
        tools: list[types.Tool] = []
        try:
            with anyio.fail_after(timeout_s):
                async with self._connect(url, headers, timeout_s) as client:
                    cursor: str | None = None
                    for _ in range(MAX_LIST_PAGES):
                        page = await client.list_tools(cursor=cursor)
                        tools.extend(page.tools[: MAX_IMPORTED_TOOLS + 1 - len(tools)])
                        cursor = page.next_cursor
                        if cursor is None or len(tools) > MAX_IMPORTED_TOOLS:
                            break
        except TimeoutError:
            raise ToolTimeout(
                f"the MCP server at {url} did not list its tools within {timeout_s:g} s", timeout_s=timeout_s
            ) from None
        except Exception as exc:
            raise _failure(f"listing the tools of the MCP server at {url} failed", exc) from None
        if len(tools) > MAX_IMPORTED_TOOLS:
            raise ValidationFailed(f"the server lists over {MAX_IMPORTED_TOOLS} tools", field="url")
        if cursor is not None:
            raise ValidationFailed(
                f"the server's tool list goes on past {MAX_LIST_PAGES} pages; at most {MAX_IMPORTED_TOOLS} "
                "tools are imported, in at most that many pages",
                field="url",
            )
        return tools

    @asynccontextmanager
    async def _connect(self, url: str, headers: Mapping[str, str], timeout_s: float) -> AsyncIterator[Client]:
        """A client for one call; a body past the ceiling cancels everything the connection does at once
        (the SDK would otherwise reconnect, or wait out its read timeout) and raises ResponseTooLarge."""
        overflowed = anyio.Event()
        make = self._http_client or guarded_http_client(self.policy, self.max_body_bytes, overflowed.set)
        http = make(headers, timeout_s)
        transport = streamable_http_client(url, http_client=http, max_sse_event_size=self.max_body_bytes)
        try:
            async with anyio.create_task_group() as watch:

                async def cut_when_overflowed() -> None:
                    await overflowed.wait()
                    watch.cancel_scope.cancel()

                watch.start_soon(cut_when_overflowed)
                async with http, Client(transport, read_timeout_seconds=timeout_s, cache=None) as client:
                    yield client
                watch.cancel_scope.cancel()
        except Exception:
            if overflowed.is_set():  # whatever the SDK made of the cut, the cause is the size
                raise ResponseTooLarge(url, self.max_body_bytes) from None
            raise
        if overflowed.is_set():
            raise ResponseTooLarge(url, self.max_body_bytes)


def _result_value(result: types.CallToolResult) -> Any:
    """Structured content when the tool gave some, else the one text block's text, else every block."""
    if result.is_error:
        raise _tool_error(result)
    if result.structured_content is not None:
        return result.structured_content
    if len(result.content) == 1 and isinstance(result.content[0], types.TextContent):
        return result.content[0].text
    return [block.model_dump(mode="json", by_alias=True, exclude_none=True) for block in result.content]


def _tool_error(result: types.CallToolResult) -> ToolCallFailed:
    """The remote tool's error; an `{"error": {...}}` text (as toolserver's /mcp sends) is unwrapped."""
    text = " ".join(b.text for b in result.content if isinstance(b, types.TextContent)) or "tool error"
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        kind = error.get("error_type") or error.get("type") or "mcp_tool_error"
        return ToolCallFailed(error["message"][:_MAX_ERROR], error_type=str(kind))
    return ToolCallFailed(text[:_MAX_ERROR], error_type="mcp_tool_error")


def _failure(what: str, exc: BaseException) -> ToolServerError:
    """One clear error from whatever the SDK raised (often nested in exception groups)."""
    while isinstance(getattr(exc, "exceptions", None), (list, tuple)) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, (EgressDenied, ResponseTooLarge)):
        return exc
    if isinstance(exc, MCPError):
        return ToolCallFailed(f"{what}: {exc.message}", error_type="mcp_error", code=exc.code)
    if isinstance(exc, httpx2.HTTPError):
        return ToolCallFailed(f"{what}: {type(exc).__name__}: {exc}", error_type="connection_error")
    return ToolCallFailed(f"{what}: {type(exc).__name__}: {exc}", error_type="mcp_error")


# -- import ------------------------------------------------------------------------------------------


class McpImport(BaseModel):
    """`POST /v1/tools/import/mcp`: where the MCP server is, and how to name its tools here."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., max_length=2048, description="the server's Streamable HTTP endpoint")
    headers: dict[str, str] | None = Field(None, description="sent with every request, e.g. Authorization")
    secret_headers: dict[str, str] | None = Field(None, description="header -> name of a secret of yours")
    prefix: str = Field("", max_length=32, description="put before each remote tool's name")
    timeout_s: float | None = Field(None, gt=0, le=600)


async def import_mcp_tools(tools: ToolService, principal: Principal, body: McpImport) -> list[dict[str, Any]]:
    """List the server's tools and register each as an `mcp` tool of the caller; all or nothing is written."""
    runner = tools.runners.get("mcp")
    if not isinstance(runner, McpToolRunner):
        raise UserError("this server has no mcp tool runner configured")
    endpoint = McpToolConfig(
        url=_check_url(body.url, field="url"),
        tool="",
        headers=body.headers or {},
        secret_headers=body.secret_headers or {},
        timeout_s=body.timeout_s or DEFAULT_TIMEOUT_S,
    )
    secrets: Mapping[str, str] = {}
    if endpoint.secret_headers:
        names = list(endpoint.secret_headers.values())
        secrets = await asyncio.to_thread(tools.secrets.resolve, principal.namespace, names)
    remote = await runner.list_tools(endpoint.url, endpoint.request_headers(secrets), endpoint.timeout_s)
    config = {
        "url": endpoint.url,
        "headers": dict(endpoint.headers),
        "secret_headers": dict(endpoint.secret_headers),
        "timeout_s": endpoint.timeout_s,
    }
    # Checking a schema costs about 5 us per byte (1.7 s for 250 KB): on the import pool, never on this loop.
    specs = await run_import(principal.namespace, _specs, remote, body.prefix, config, principal.namespace)
    registered: list[dict[str, Any]] = await tools.register_specs(principal, specs)
    return registered


def _specs(remote: list[types.Tool], prefix: str, config: dict[str, Any], namespace: str) -> list[ToolSpec]:
    """Every remote tool as our spec, checked before anything is written; slow: off the loop."""
    builtin = {spec.name for spec in BUILTIN_TOOLS}
    specs: dict[str, ToolSpec] = {}
    budget = ExpansionBudget()  # the schemas together, as an OpenAPI import's: bytes and time
    try:
        for tool in remote:
            budget.charge(len(json.dumps(tool.input_schema or {}, ensure_ascii=False).encode("utf-8")))
    except (TypeError, ValueError, RecursionError):
        raise ValidationFailed("the server lists an input schema that is not JSON", field="url") from None
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(
            f"the server's input schemas are over {budget.max_bytes} bytes together; import fewer tools",
            field="url",
            limit=budget.max_bytes,
        ) from exc
    for tool in remote:
        name = _local_name(prefix, tool.name)
        if name in builtin:
            raise ValidationFailed(
                f"the remote tool {tool.name!r} would be named {name!r}, a builtin tool; use a prefix",
                field="prefix",
            )
        if name in specs:
            raise ValidationFailed(
                f"two remote tools would both be named {name!r} here; use another prefix", field="prefix"
            )
        schema = dict(tool.input_schema or {"type": "object"})
        try:
            budget.check_time()
            parameters = check_schema(schema)
        except PayloadTooLarge as exc:
            details = {**exc.details, "field": "url"}
            raise PayloadTooLarge(f"the remote tool {tool.name!r}: {exc.message}", **details) from None
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"the remote tool {tool.name!r} has an unusable input schema: {exc.message}", field="url"
            ) from None
        specs[name] = ToolSpec(
            name=name,
            description=(tool.description or tool.title or "")[:_MAX_DESCRIPTION],
            kind="mcp",  # type: ignore[arg-type]  # until ToolKind lists "mcp"
            parameters=parameters,
            config={**config, "tool": tool.name},
            namespace=namespace,
        )
    return list(specs.values())


def _local_name(prefix: str, remote: str) -> str:
    """`prefix` + the remote name with characters our names do not allow replaced by `_`."""
    name = prefix + re.sub(r"[^A-Za-z0-9_-]", "_", remote)
    try:
        return check_tool_name(name)
    except ValidationFailed:
        raise ValidationFailed(
            f"the remote tool {remote!r} cannot be named {name!r} here: names are 1-64 characters, "
            "a letter first; choose a prefix that starts with a letter",
            field="prefix",
        ) from None


def _check_url(url: object, field: str = "config.url") -> str:
    """`url` when it is an absolute http(s) URL, else ValidationFailed."""
    if not isinstance(url, str) or not url:
        raise ValidationFailed("an MCP server url is needed", field=field)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValidationFailed(f"the MCP server url must be http(s)://host/..., not {url!r}", field=field)
    return url


def _bad(key: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field=f"config.{key}")


router = APIRouter(prefix="/v1/tools", tags=["tools"])


@router.post("/import/mcp", status_code=201)
async def import_mcp(body: McpImport, who: Principal = Depends(caller), svc: Any = Depends(services)) -> Any:
    """Every tool of an MCP server (Streamable HTTP) becomes an `mcp` tool of the caller."""
    return {"tools": await import_mcp_tools(svc.tools, who, body)}
