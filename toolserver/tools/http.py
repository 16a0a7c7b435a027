"""Run `http` tools: map arguments onto a request (path, query, headers, body) and return the response.

How arguments are placed: each `{name}` in the url takes the argument `name` (URL-quoted, `/` included, and
`.`/`..` refused). `query`, `body` and `header_args` name further arguments, and `body_arg` one argument
whose value is the whole body. Every other argument goes where `remaining` says: to the query or the body.
It defaults to the body for POST/PUT/PATCH (unless `body_arg` is set) and to the query otherwise; setting
`query` or `body` to the string "remaining" says the same explicitly. No argument is silently dropped.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

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
    ToolRunner,
    ToolSpec,
    ToolTimeout,
    config_str_map,
    secret_header_values,
)

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_S", "HttpToolConfig", "HttpToolRunner"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_PLACEHOLDER = re.compile(r"\{([^{}/]+)\}")
_DEFAULT_RESPONSE_HEADERS = ("content-type", "content-length", "location", "retry-after", "etag", "link")
_EXCERPT_CHARS = 500


@dataclass(frozen=True)
class HttpToolConfig:
    """The `config` of an `http` tool, checked; build it with `from_dict`."""

    url: str
    method: str = "GET"
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    remaining: Literal["query", "body"] = "query"
    body_arg: str | None = None
    body_encoding: Literal["json", "form"] = "json"
    header_args: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    secret_headers: Mapping[str, str] = field(default_factory=dict)  # header -> secret name
    aliases: Mapping[str, str] = field(default_factory=dict)  # argument -> name on the wire
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    response_headers: tuple[str, ...] = _DEFAULT_RESPONSE_HEADERS
    follow_redirects: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        """Argument names the url template takes, in order."""
        return tuple(dict.fromkeys(_PLACEHOLDER.findall(self.url)))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> HttpToolConfig:
        """Check a tool's config; raise ValidationFailed(field="config.<key>") naming what is wrong."""
        if not isinstance(config, Mapping):
            raise _bad("", "the config of an http tool must be an object")
        known = {f for f in cls.__dataclass_fields__} | {"path"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise _bad(unknown[0], f"unknown http tool config key {unknown[0]!r}")
        url = _check_url_template(config.get("url"))
        method = str(config.get("method", "GET")).upper()
        if method not in _METHODS:
            raise _bad("method", f"method must be one of {', '.join(_METHODS)}, not {method!r}")
        body_arg = _optional_str(config, "body_arg")
        query, body = config.get("query"), config.get("body")
        if query == "remaining" and body == "remaining":
            raise _bad("body", 'only one of query and body can take the "remaining" arguments')
        remaining = config.get("remaining")
        if remaining is None:
            if query == "remaining" or body == "remaining":
                remaining = "query" if query == "remaining" else "body"
            else:
                remaining = "body" if method in _BODY_METHODS and body_arg is None else "query"
        parsed = cls(
            url=url,
            method=method,
            query=() if query == "remaining" else _names({"query": query}, "query"),
            body=() if body == "remaining" else _names({"body": body}, "body"),
            remaining=_choice({"remaining": remaining}, "remaining", ("query", "body")),
            body_arg=body_arg,
            body_encoding=_choice(config, "body_encoding", ("json", "form")),
            header_args=_names(config, "header_args"),
            headers=config_str_map(config, "headers"),
            secret_headers=config_str_map(config, "secret_headers"),
            aliases=config_str_map(config, "aliases"),
            timeout_s=_positive(config, "timeout_s", DEFAULT_TIMEOUT_S),
            max_response_bytes=_positive_int(config, "max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            response_headers=tuple(
                h.lower() for h in _names(config, "response_headers", _DEFAULT_RESPONSE_HEADERS)
            ),
            follow_redirects=bool(config.get("follow_redirects", False)),
        )
        if parsed.body_arg is not None and (parsed.body or parsed.remaining == "body"):
            raise _bad("body_arg", "body_arg sends one argument as the whole body; it excludes body")
        if "path" in config and set(_names(config, "path")) != set(parsed.path):
            raise _bad(
                "path", f"path names {list(_names(config, 'path'))} but the url takes {list(parsed.path)}"
            )
        return parsed

    def build_request(self, arguments: Mapping[str, Any], secrets: Mapping[str, str]) -> httpx.Request:
        """The request for one call; path arguments are quoted so they cannot leave their segment."""
        placed = {*self.path, *self.header_args, *([self.body_arg] if self.body_arg else [])}
        rest = [name for name in arguments if name not in placed | {*self.query, *self.body}]
        query_names = [n for n in self.query if n in arguments] + (rest if self.remaining == "query" else [])
        body_names = [n for n in self.body if n in arguments] + (rest if self.remaining == "body" else [])

        url = _PLACEHOLDER.sub(lambda m: _path_segment(m.group(1), arguments), self.url)
        params: list[tuple[str, str | int | float | bool | None]] = [
            (self.aliases.get(n, n), v)
            for n in query_names
            for v in _query_values(arguments[n])
            if v is not None
        ]
        headers = {
            "User-Agent": "toolserver",
            **self.headers,
            **secret_header_values(self.secret_headers, secrets),
        }
        for name in self.header_args:
            if arguments.get(name) is not None:
                headers[self.aliases.get(name, name)] = _scalar_text(arguments[name])
        content: dict[str, Any] = {}
        if self.body_arg is not None and self.body_arg in arguments:
            content["json"] = arguments[self.body_arg]
        elif body_names:
            body = {self.aliases.get(n, n): arguments[n] for n in body_names}
            if self.body_encoding == "form":
                content["data"] = {k: _scalar_text(v) for k, v in body.items() if v is not None}
            else:
                content["json"] = body
        try:
            request = httpx.Request(self.method, url, params=params, headers=headers, **content)
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise ValidationFailed(f"cannot build the request: {exc}", field="arguments") from None
        if request.url.scheme not in ("http", "https"):
            raise _bad("url", f"only http and https urls are allowed, not {request.url.scheme!r}")
        return request


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


def _path_segment(name: str, arguments: Mapping[str, Any]) -> str:
    if arguments.get(name) is None:
        raise ValidationFailed(f"missing path parameter {name!r}", field=f"arguments.{name}")
    value = _scalar_text(arguments[name])
    if value in ("", ".", ".."):
        raise ValidationFailed(f"path parameter {name!r} cannot be {value!r}", field=f"arguments.{name}")
    return urllib.parse.quote(value, safe="")


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _query_values(value: Any) -> list[str | None]:
    if isinstance(value, list):
        return [None if v is None else _scalar_text(v) for v in value]
    return [None if value is None else _scalar_text(value)]


def _check_url_template(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise _bad("url", "an http tool needs a url")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise _bad("url", f"only http and https urls are allowed, not {parts.scheme or 'no scheme'!r}")
    if not parts.netloc or "{" in parts.netloc:
        raise _bad("url", "the url needs a fixed host; {placeholders} may only appear in its path")
    if "{" in _PLACEHOLDER.sub("", url) or "}" in _PLACEHOLDER.sub("", url):
        raise _bad("url", "the url has an unbalanced '{' or '}'")
    return url


def _bad(key: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, field=f"config.{key}" if key else "config")


def _optional_str(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(key, f"{key} must be a string")
    return value


def _names(config: Mapping[str, Any], key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _bad(key, f"{key} must be a list of names")
    return tuple(value)


def _positive_int(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not value > 0:
        raise _bad(key, f"{key} must be a positive whole number")
    return value


def _choice(config: Mapping[str, Any], key: str, options: tuple[str, ...]) -> Any:
    value = config.get(key, options[0])
    if value not in options:
        raise _bad(key, f"{key} must be one of {', '.join(options)}")
    return value


def _positive(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _bad(key, f"{key} must be a positive number")
    return float(value)
