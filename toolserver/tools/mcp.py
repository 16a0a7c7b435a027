"""Run `mcp` tools: the tools of an external MCP server, imported here and proxied to it.

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

Outgoing requests go to a URL the caller chose, as `http` tools do, under the same egress policy and body
ceiling (`toolserver.outbound.mcp_transport`); the import lists the remote tools from the server itself, so an
unreachable or refused URL fails at import time, not at the first call. Each call carries how many MCP proxies
it has passed (`HOPS_HEADER`), so that a chain of imports leading back to itself ends (see `/mcp`).
"""

from __future__ import annotations

import contextvars
import json
import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError

from foundation.errors import PayloadTooLarge, ToolServerError, ValidationFailed
from foundation.schema.limits import ExpansionBudget, run_import
from foundation.schema.validation import check_schema
from toolserver.outbound.body import DEFAULT_MAX_OUTBOUND_BYTES, ResponseTooLarge
from toolserver.outbound.egress import EgressDenied, EgressPolicy
from toolserver.outbound.mcp_transport import HttpClientFactory, mcp_client
from toolserver.tools.base import (
    CallContext,
    ToolCallFailed,
    ToolRunner,
    ToolSpec,
    ToolTimeout,
    check_tool_name,
    config_str_map,
    secret_header_names,
    secret_header_values,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "HOPS_HEADER",
    "MAX_IMPORTED_TOOLS",
    "MAX_LIST_PAGES",
    "McpToolConfig",
    "McpToolRunner",
    "current_hops",
    "serving_hops",
    "specs_from_remote",
]

DEFAULT_TIMEOUT_S = 30.0
MAX_IMPORTED_TOOLS = 256
MAX_LIST_PAGES = 50  # a server that pages on and on (or a page at a time) is refused past this many
_MAX_DESCRIPTION = 8192
_MAX_ERROR = 2000

# How many MCP proxies a call has passed: imported tools forward it + 1.
HOPS_HEADER = "x-toolserver-mcp-hops"
_hops: contextvars.ContextVar[int] = contextvars.ContextVar("toolserver_mcp_hops", default=0)


def current_hops() -> int:
    """MCP proxies the call being served has passed (0 outside a `/mcp` tools/call)."""
    return _hops.get()


@contextmanager
def serving_hops(hops: int) -> Iterator[None]:
    """Within this block, the call being served has passed `hops` MCP proxies (what calls out forward + 1)."""
    reset = _hops.set(hops)
    try:
        yield
    finally:
        _hops.reset(reset)


@dataclass(frozen=True)
class McpToolConfig:
    """The `config` of an `mcp` tool, checked; build it with `from_dict` (or `endpoint` for an import)."""

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

    @classmethod
    def endpoint(
        cls,
        url: str,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> McpToolConfig:
        """Where an import lists tools (no remote tool named yet); a bad url is ValidationFailed(field="url")."""
        return cls(
            url=_check_url(url, field="url"),
            tool="",
            headers=headers or {},
            secret_headers=secret_headers or {},
            timeout_s=timeout_s or DEFAULT_TIMEOUT_S,
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

    def secret_names(self, tool: ToolSpec) -> Sequence[str]:
        """The secrets the tool's `secret_headers` name."""
        return secret_header_names(tool.config)

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Call the remote tool; its structured content, its one text, or all its content blocks."""
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

    async def import_tools(
        self,
        endpoint: McpToolConfig,
        secrets: Mapping[str, str],
        *,
        prefix: str,
        namespace: str,
        reserved: set[str],
    ) -> list[ToolSpec]:
        """Every tool the server at `endpoint` lists, as checked specs of `namespace` (none named in `reserved`)."""
        remote = await self.list_tools(endpoint.url, endpoint.request_headers(secrets), endpoint.timeout_s)
        config = {
            "url": endpoint.url,
            "headers": dict(endpoint.headers),
            "secret_headers": dict(endpoint.secret_headers),
            "timeout_s": endpoint.timeout_s,
        }
        # Checking a schema costs about 5 us per byte (1.7 s for 250 KB): on the import pool, never on this loop.
        return await run_import(namespace, specs_from_remote, remote, prefix, config, namespace, reserved)

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

    def _connect(
        self, url: str, headers: Mapping[str, str], timeout_s: float
    ) -> AbstractAsyncContextManager[Client]:
        return mcp_client(
            url,
            headers,
            timeout_s,
            policy=self.policy,
            max_body_bytes=self.max_body_bytes,
            http_client=self._http_client,
        )


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


def specs_from_remote(
    remote: list[types.Tool], prefix: str, config: dict[str, Any], namespace: str, reserved: set[str]
) -> list[ToolSpec]:
    """Every remote tool as our spec, checked before anything is written; slow: off the loop."""
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
        if name in reserved:
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
            kind="mcp",
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
