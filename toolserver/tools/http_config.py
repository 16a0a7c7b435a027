"""The config of an `http` tool: how arguments map onto a request (path, query, headers, body).

How arguments are placed: each `{name}` in the url takes the argument `name` (URL-quoted, `/` included, and
`.`/`..` refused). `query`, `body` and `header_args` name further arguments, and `body_arg` one argument
whose value is the whole body. Every other argument goes where `remaining` says: to the query or the body.
It defaults to the body for POST/PUT/PATCH (unless `body_arg` is set) and to the query otherwise; setting
`query` or `body` to the string "remaining" says the same explicitly. No argument is silently dropped.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from foundation.errors import ValidationFailed
from toolserver.tools.base import config_str_map, secret_header_values

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_S", "HttpToolConfig"]

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_BODY_METHODS = ("POST", "PUT", "PATCH")
_PLACEHOLDER = re.compile(r"\{([^{}/]+)\}")
_DEFAULT_RESPONSE_HEADERS = ("content-type", "content-length", "location", "retry-after", "etag", "link")


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
