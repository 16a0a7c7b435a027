"""LLM clients from an agent's `llm` config: any OpenAI-compatible server, or a scripted model."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from agent_core.llm import LLMClient, OpenAICompatibleClient
from agent_core.llm.config import ScriptedConfig, parse_llm_config
from foundation.errors import UserError, ValidationFailed
from toolserver.outbound.body import DEFAULT_MAX_OUTBOUND_BYTES, bounded_transport
from toolserver.outbound.egress import EgressPolicy, GuardedTransport

__all__ = ["KEY_ENVS_SETTING", "KeyEndpoint", "LLMPolicy", "build_llm", "tenant_llm"]

KEY_ENVS_SETTING = "TOOLSERVER_LLM_KEY_ENVS"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class KeyEndpoint:
    """Where a shared key may be sent: `host` (https on 443), `host:port` (http or https there), or
    `http(s)://host[:port]` (that scheme and port)."""

    host: str
    port: int
    scheme: str | None = None  # None: either

    @classmethod
    def parse(cls, text: str) -> KeyEndpoint:
        """One endpoint of a TOOLSERVER_LLM_KEY_ENVS entry; ValueError naming what is wrong."""
        given_scheme = "://" in text
        try:
            url = httpx.URL(text if given_scheme else "https://" + text)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"{text!r} is not host, host:port or http(s)://host[:port]: {exc}") from None
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        if url.scheme not in ("http", "https") or not host or url.userinfo or url.path not in ("", "/"):
            raise ValueError(f"{text!r} is not host, host:port or http(s)://host[:port]")
        if given_scheme:
            return cls(host, _default_port(url), url.scheme)
        return cls(host, url.port, None) if url.port else cls(host, 443, "https")

    def admits(self, base_url: str) -> bool:
        """Whether a client of `base_url` connects here (same host, port and, when bound, scheme)."""
        try:
            url = httpx.URL(base_url)
        except (httpx.InvalidURL, ValueError):
            return False
        host = url.raw_host.decode("ascii").lower().rstrip(".")
        return (host, _default_port(url)) == (self.host, self.port) and self.scheme in (None, url.scheme)

    def __str__(self) -> str:
        where = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{where}:{self.port}" if self.scheme else f"{where}:{self.port}"


@dataclass(frozen=True)
class LLMPolicy:
    """What the server lets an agent's `llm` config reach: endpoints under `egress`, and the server's own
    environment variables named in `key_envs` as keys; none by default, since a tenant chooses the base_url
    the key is sent to. `max_body_bytes` caps what is read of each answer.

    Each entry of `key_envs` is `NAME=ENDPOINT` (see KeyEndpoint; a name may have several entries): that key
    goes to that endpoint only. `TOOLSERVER_LLM_KEY_ENVS` (`from_setting`) takes only such entries. A bare
    `NAME` is for library use: that key goes wherever `egress` lets the client connect. Entries are strings so
    that the policy crosses process boundaries as a list (environment agents get it that way).
    """

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    key_envs: frozenset[str] = frozenset()
    max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES

    @classmethod
    def from_setting(
        cls, egress: EgressPolicy, key_envs: str, max_body_bytes: int = DEFAULT_MAX_OUTBOUND_BYTES
    ) -> LLMPolicy:
        """From `TOOLSERVER_LLM_KEY_ENVS` (comma-separated `NAME=ENDPOINT`); UserError naming a bad entry."""
        entries = [entry.strip() for entry in key_envs.split(",") if entry.strip()]
        for entry in entries:
            name, bound, endpoint = entry.partition("=")
            name = name.strip()
            if not bound or not endpoint.strip():
                raise UserError(
                    f"{KEY_ENVS_SETTING}: {entry!r} names no endpoint; bind each shared key to where it may be "
                    f"sent, e.g. {KEY_ENVS_SETTING}={name or 'OPENAI_API_KEY'}=api.openai.com (host means https "
                    "on 443; host:port, or http(s)://host:port, for others; repeat the name for more)"
                )
            if not _ENV_NAME.fullmatch(name):
                raise UserError(
                    f"{KEY_ENVS_SETTING}: {name!r} in {entry!r} is not an environment variable name"
                )
            try:
                KeyEndpoint.parse(endpoint.strip())
            except ValueError as exc:
                raise UserError(f"{KEY_ENVS_SETTING}: {name}: {exc}") from None
        normalized = (f"{e.partition('=')[0].strip()}={e.partition('=')[2].strip()}" for e in entries)
        return cls(egress, frozenset(normalized), max_body_bytes)

    def key_endpoints(self, name: str) -> tuple[KeyEndpoint, ...] | None:
        """Where the key in `name` may go: None when it is not shared, () when it may go anywhere `egress`
        allows (a bare name), else its endpoints."""
        if name in self.key_envs:
            return ()
        bound = [_bound_endpoint(entry) for entry in self.key_envs if entry.partition("=")[0] == name]
        return tuple(e for e in bound if e is not None) or None

    def shared_names(self) -> Iterable[str]:
        """The environment variables shared as keys, each once."""
        return sorted({entry.partition("=")[0] for entry in self.key_envs})


def _bound_endpoint(entry: str) -> KeyEndpoint | None:
    try:
        return KeyEndpoint.parse(entry.partition("=")[2].strip())
    except ValueError:  # only from_setting checks; a bad entry made by hand binds nothing
        return None


def _default_port(url: httpx.URL) -> int:
    return int(url.port or (443 if url.scheme == "https" else 80))


def build_llm(
    config: dict[str, Any], policy: LLMPolicy | None = None, *, secret: str | None = None
) -> LLMClient:
    """A run's LLM client from its `llm` config (see `agent_core.llm.config`), the endpoint under `policy`.

    `secret` is the value of the namespace secret named by `api_key_secret` (the caller resolves it; without it
    the config is only checked).
    """
    policy = policy or LLMPolicy()
    parsed = parse_llm_config(config, field="llm")
    if isinstance(parsed, ScriptedConfig):
        return parsed.resumable_model()
    hint = (
        "store your key as a secret (PUT /v1/secrets/NAME) and name it in llm.api_key_secret (the CLI's "
        "--api-key-env does that from your own environment), or "
    )
    return tenant_llm(
        parsed.client_options(),
        policy,
        api_key=parsed.api_key or secret or "",
        api_key_env=parsed.api_key_env,
        field="llm",
        hint=hint,
    )


def tenant_llm(
    options: dict[str, Any],
    policy: LLMPolicy,
    *,
    api_key: str,
    api_key_env: str | None,
    field: str,
    hint: str = "",
) -> OpenAICompatibleClient:
    """An OpenAI-compatible client as the server lets a tenant have one: the endpoint under the egress policy,
    a key from the server's environment only where `key_envs` shares it and only for the endpoints it is bound
    to, never the server's OPENAI_API_KEY; no answer read past `policy.max_body_bytes`.

    `field` prefixes the fields errors name (`llm`, `config.llm`); `hint` starts the advice of that error.
    """
    endpoints: tuple[KeyEndpoint, ...] | None = None
    if api_key_env:
        endpoints = policy.key_endpoints(str(api_key_env))
        if endpoints is None:
            raise ValidationFailed(
                f"the server does not share its environment variable {api_key_env!r} as an LLM key; {hint}an "
                f"operator lists the shared ones in {KEY_ENVS_SETTING}",
                field=f"{field}.api_key_env",
            )
        api_key = os.environ.get(str(api_key_env), "")
    if options.get("base_url") is not None:
        policy.egress.check_url(str(options["base_url"]), field=f"{field}.base_url")
    transport = bounded_transport(GuardedTransport(policy.egress), httpx)  # bounded decoding of each answer
    client = OpenAICompatibleClient(
        **options, api_key=api_key, transport=transport, max_response_bytes=policy.max_body_bytes
    )
    if endpoints and not any(endpoint.admits(client.base_url) for endpoint in endpoints):
        raise ValidationFailed(
            f"the server shares {api_key_env!r} only with {', '.join(map(str, endpoints))}, not with "
            f"{_origin(client.base_url)}; {hint}or use an endpoint the key is bound to",
            field=f"{field}.api_key_env",
        )
    return client


def _origin(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, ValueError):
        return repr(base_url[:200])
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
