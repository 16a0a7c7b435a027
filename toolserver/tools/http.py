"""Run `http` tools: send the request their config builds from the arguments, and return the response.

What comes back is read under two caps: the tool's own `max_response_bytes` and the server's ceiling for
anything read from a tenant-chosen url (`TOOLSERVER_MAX_OUTBOUND_BODY_MB`); bodies are decoded in bounded
pieces, and connections go only where the egress policy allows.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import httpx

from foundation.errors import ValidationFailed
from toolserver.outbound.body import (
    DEFAULT_MAX_OUTBOUND_BYTES,
    SETTING,
    ResponseTooLarge,
    bounded_transport,
)
from toolserver.outbound.egress import EgressPolicy, GuardedTransport
from toolserver.tools.base import (
    CallContext,
    ToolCallFailed,
    ToolDraft,
    ToolRunner,
    ToolSpec,
    ToolTimeout,
    secret_header_names,
)
from toolserver.tools.http_config import DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_S, HttpToolConfig

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_S", "HttpToolConfig", "HttpToolRunner"]

_EXCERPT_CHARS = 500


class HttpToolRunner(ToolRunner):
    """Calls `http` tools with one shared `httpx.AsyncClient`.

    Without a client, one is made on first use that connects only where `policy` allows (default: public
    addresses) and decodes bodies in bounded pieces; a client passed in is used as it is. No response is read
    past `max_body_bytes` (the server's `TOOLSERVER_MAX_OUTBOUND_BODY_MB`), whatever a tool's config asks.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        policy: EgressPolicy | None = None,
        max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES,
    ) -> None:
        self._client = client
        self._own_client = client is None
        self.policy = policy or EgressPolicy()
        self.max_body_bytes = max_body_bytes

    def build_spec(self, draft: ToolDraft) -> ToolSpec:
        """An http tool from `url`, `method`, headers and argument placement; a broken config is refused now."""
        fields = draft.fields
        if not fields.get("url"):
            raise ValidationFailed("an http tool needs a url", field="url")
        config: dict[str, Any] = {
            "url": fields["url"],
            "method": str(fields.get("method", "GET")).upper(),
            "headers": fields.get("headers") or {},
            "secret_headers": fields.get("secret_headers") or {},
            "query": fields.get("query") or [],
            "body": "remaining" if fields.get("body") == "all" else fields.get("body"),
            "timeout_s": fields.get("timeout_s") or DEFAULT_TIMEOUT_S,
        }
        if fields.get("max_response_bytes"):
            config["max_response_bytes"] = fields["max_response_bytes"]
        if fields.get("follow_redirects"):
            config["follow_redirects"] = True
        checked = HttpToolConfig.from_dict(config)  # not at every call
        self.check_destination(config["url"], field="url")
        self.check_response_cap(checked.max_response_bytes, field="max_response_bytes")
        return draft.spec(config)

    def secret_names(self, tool: ToolSpec) -> Sequence[str]:
        """The secrets the tool's `secret_headers` name."""
        return secret_header_names(tool.config)

    def check_destination(self, url: str, *, field: str) -> None:
        """At registration: refuse a url whose host is a literal address the egress policy denies."""
        self.policy.check_url(url, field=field)

    def check_response_cap(self, max_response_bytes: int, *, field: str) -> None:
        """At registration: refuse a tool asking to read more than the server's ceiling."""
        if max_response_bytes > self.max_body_bytes:
            raise ValidationFailed(
                f"max_response_bytes can be at most {self.max_body_bytes}, the most this server reads from a "
                f"url ({SETTING})",
                field=field,
                max_bytes=self.max_body_bytes,
            )

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Send the tool's request; its answer as `{status, headers, body}`, a non-2xx as ToolCallFailed."""
        config = HttpToolConfig.from_dict(tool.config)
        request = config.build_request(arguments, context.secrets)
        try:
            return await asyncio.wait_for(self._send(config, request), timeout=config.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise ToolTimeout(
                f"{request.method} {_where(request)} did not answer within {config.timeout_s:g} s",
                timeout_s=config.timeout_s,
            ) from None
        except httpx.HTTPError as exc:
            raise ToolCallFailed(
                f"{request.method} {_where(request)} failed: {type(exc).__name__}: {exc}",
                error_type="connection_error",
            ) from None

    async def aclose(self) -> None:
        """Close the client if this runner made it."""
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def _send(self, config: HttpToolConfig, request: httpx.Request) -> dict[str, Any]:
        if self._client is None:
            transport = bounded_transport(GuardedTransport(self.policy), httpx)
            self._client = httpx.AsyncClient(
                transport=transport, trust_env=False
            )  # proxies would skip the check
        timeout = httpx.Timeout(config.timeout_s)
        request.extensions["timeout"] = timeout.as_dict()
        response = await self._client.send(request, stream=True, follow_redirects=config.follow_redirects)
        try:
            if config.max_response_bytes > self.max_body_bytes:  # stored before the ceiling was lowered
                raw = await _read_capped(
                    response, self.max_body_bytes, ResponseTooLarge(_where(request), self.max_body_bytes)
                )
            else:
                raw = await _read_capped(
                    response, config.max_response_bytes, _too_large(config.max_response_bytes)
                )
        finally:
            await response.aclose()
        text = _decode(raw, response.charset_encoding)
        if not 200 <= response.status_code < 300:
            excerpt = text[:_EXCERPT_CHARS]
            raise ToolCallFailed(
                f"{request.method} {_where(request)} answered {response.status_code}: {excerpt}",
                status_code=response.status_code,
                error_type="http_status",
                body_excerpt=excerpt,
            )
        return {
            "status": response.status_code,
            "headers": {h: response.headers[h] for h in config.response_headers if h in response.headers},
            "body": _parse_body(text, response.headers.get("content-type", "")),
        }


async def _read_capped(response: httpx.Response, cap: int, too_large: ToolCallFailed) -> bytes:
    """The body, refused as soon as it is known to pass `cap`: nothing past it is read or kept."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap and "content-encoding" not in response.headers:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(cap: int) -> ToolCallFailed:
    return ToolCallFailed(
        f"the response body is over max_response_bytes={cap}; the tool's config can raise the cap",
        error_type="response_too_large",
        max_response_bytes=cap,
    )


def _decode(raw: bytes, charset: str | None) -> str:
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def _parse_body(text: str, content_type: str) -> Any:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _where(request: httpx.Request) -> str:
    # Without the query: it can be long, and it is the caller's own data anyway.
    return str(request.url.copy_with(query=None))
