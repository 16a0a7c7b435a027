"""A client for any OpenAI-compatible `/chat/completions` endpoint, over plain httpx.

Retries 429/5xx answers, timeouts and connection errors with exponential backoff and jitter,
honouring `Retry-After`; other 4xx answers fail at once with the status and an excerpt of the body.
No answer is read past `max_response_bytes` (a streamed one counts every chunk), and of an error answer only
the first `_ERROR_BODY_BYTES`: the endpoint is whatever the caller named, and the process reading it may
serve others.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import json
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from agent_core.errors import LLMConfigError, LLMError
from agent_core.llm.base import AssistantTurn, LLMClient, ToolCall, Usage

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "OpenAICompatibleClient"]

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_EXCERPT = 500
_ERROR_BODY_BYTES = 64 * 1024  # of an error answer only an excerpt is kept


class _Retry(Exception):
    """One failed attempt that may be tried again."""

    def __init__(self, message: str, status_code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class OpenAICompatibleClient(LLMClient):
    """Chat completions with tools; `stream=True` reads SSE and assembles the same `AssistantTurn`.

    `base_url` and `api_key` fall back to `OPENAI_BASE_URL` and `OPENAI_API_KEY`, `model` to
    `OPENAI_MODEL` (an empty `api_key` sends none). `extra_body` is merged into every request (e.g.
    `temperature`); `transport` replaces httpx's own (e.g. to restrict where it connects). An answer (or a
    stream) longer than `max_response_bytes` fails with a non-retryable LLMError.
    """

    def __init__(
        self,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 4,
        stream: bool = False,
        extra_body: dict[str, Any] | None = None,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL).rstrip("/")
        resolved_model = model or os.environ.get("OPENAI_MODEL")
        if not resolved_model:
            raise LLMConfigError("no model given: pass model= or set OPENAI_MODEL")
        self.model: str = resolved_model
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.stream = stream
        self.extra_body = dict(extra_body or {})
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self._transport = transport
        self.max_response_bytes = max_response_bytes
        self._http: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        """The chat completions endpoint."""
        return f"{self.base_url}/chat/completions"

    async def __aenter__(self) -> OpenAICompatibleClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections, if any were opened."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout_s),
                transport=self._transport,
                trust_env=self._transport is None,  # environment proxies would bypass a given transport
            )
        return self._http

    def _payload(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"model": self.model, "messages": messages}
        if tools:
            payload["tools"] = tools
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        payload.update(self.extra_body)
        return payload

    async def complete(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> AssistantTurn:
        """One assistant turn, retrying what may pass on a second try."""
        payload = self._payload(messages, tools)
        attempt = 0
        while True:
            try:
                if self.stream:
                    return await self._stream_once(payload)
                return await self._post_once(payload)
            except _Retry as failure:
                if attempt >= self.max_retries:
                    raise LLMError(
                        f"{self.url} failed after {attempt + 1} attempts: {failure}",
                        status_code=failure.status_code,
                        retryable=True,
                    ) from failure
                await asyncio.sleep(self._delay(attempt, failure.retry_after))
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after_s)
        cap = min(self.backoff_max_s, self.backoff_base_s * 2**attempt)
        return cap / 2 + random.uniform(0, cap / 2)

    async def _post_once(self, payload: dict[str, Any]) -> AssistantTurn:
        try:
            async with self._client().stream("POST", self.url, json=payload) as response:
                if response.status_code >= 400:
                    await self._fail_on_status(response)
                raw = b"".join([chunk async for chunk in self._capped(response)])
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # e.g. a body that does not decode: trying again will not help
            raise LLMError(f"unreadable answer from {self.url}: {type(exc).__name__}: {exc}") from exc
        try:
            return _parse_completion(json.loads(raw))
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            excerpt = raw[:_EXCERPT].decode("utf-8", "replace")
            raise LLMError(
                f"unreadable completion from {self.url}: {exc}; body: {excerpt!r}",
                status_code=response.status_code,
            ) from exc

    async def _stream_once(self, payload: dict[str, Any]) -> AssistantTurn:
        try:
            async with self._client().stream("POST", self.url, json=payload) as response:
                if response.status_code >= 400:
                    await self._fail_on_status(response)
                assembler = _StreamAssembler()
                async for line in _lines(self._capped(response)):
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    try:
                        assembler.add(json.loads(data))
                    except ValueError as exc:
                        raise LLMError(
                            f"unreadable stream chunk from {self.url}: {data[:_EXCERPT]!r}"
                        ) from exc
                return assembler.turn()
        except httpx.TransportError as exc:
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"unreadable stream from {self.url}: {type(exc).__name__}: {exc}") from exc

    async def _capped(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The body's chunks; past `max_response_bytes` the read stops with an LLMError."""
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > self.max_response_bytes:
                raise LLMError(
                    f"the answer of {self.url} is over {self.max_response_bytes} bytes, the most this client "
                    "reads (max_response_bytes)",
                    status_code=response.status_code,
                    max_response_bytes=self.max_response_bytes,
                )
            yield chunk

    async def _fail_on_status(self, response: httpx.Response) -> None:
        """Raise for an error answer, with an excerpt of its first `_ERROR_BODY_BYTES` (the rest is not read)."""
        head = bytearray()
        async for chunk in response.aiter_bytes():
            head += chunk
            if len(head) >= _ERROR_BODY_BYTES:
                break
        self._check(response.status_code, bytes(head).decode("utf-8", "replace"), response.headers)

    def _check(self, status: int, body: str, headers: httpx.Headers) -> None:
        if status < 400:
            return
        message = f"HTTP {status} from {self.url}: {body[:_EXCERPT]}"
        if status in _RETRY_STATUSES:
            raise _Retry(message, status, _retry_after(headers.get("retry-after")))
        raise LLMError(message, status_code=status, retryable=False, body=body[:_EXCERPT])


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The text lines of a byte stream (`\n` or `\r\n`), decoded as UTF-8 as they arrive."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    parts: list[str] = []  # of the line under way: joined once it ends, so a long line costs linear time
    async for chunk in chunks:
        *ended, rest = decoder.decode(chunk).split("\n")
        if ended:
            ended[0] = "".join(parts) + ended[0]
            parts = []
            for line in ended:
                yield line.removesuffix("\r")
        parts.append(rest)
    last = "".join(parts) + decoder.decode(b"", final=True)
    if last:
        yield last.removesuffix("\r")


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def _arguments(raw: Any) -> str:
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else json.dumps(raw)


def _parse_completion(body: dict[str, Any]) -> AssistantTurn:
    if "error" in body and not body.get("choices"):
        raise ValueError(f"error object in a 200 answer: {body['error']}")
    choice = body["choices"][0]
    message = choice.get("message") or {}
    calls = tuple(
        ToolCall(
            id=raw.get("id") or f"call_{index}",
            name=(raw.get("function") or {}).get("name", ""),
            arguments=_arguments((raw.get("function") or {}).get("arguments")),
        )
        for index, raw in enumerate(message.get("tool_calls") or ())
    )
    return AssistantTurn(
        content=_text(message.get("content")),
        tool_calls=calls,
        usage=Usage.from_dict(body.get("usage")),
        finish_reason=choice.get("finish_reason"),
    )


class _StreamAssembler:
    """Joins SSE chunks: content deltas in order, tool-call deltas by their `index`."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.usage = Usage()
        self.finish_reason: str | None = None
        self.saw_content = False

    def add(self, chunk: dict[str, Any]) -> None:
        if chunk.get("error"):
            raise LLMError(f"error in stream: {str(chunk['error'])[:_EXCERPT]}")
        if chunk.get("usage"):
            self.usage = Usage.from_dict(chunk["usage"])
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("content") is not None:
                self.saw_content = True
                self.content.append(_text(delta["content"]) or "")
            for raw in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(
                    raw.get("index", len(self.calls)), {"id": "", "name": "", "arguments": ""}
                )
                slot["id"] = raw.get("id") or slot["id"]
                function = raw.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += _arguments(function.get("arguments"))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def turn(self) -> AssistantTurn:
        calls = tuple(
            ToolCall(id=slot["id"] or f"call_{index}", name=slot["name"], arguments=slot["arguments"])
            for index, slot in sorted(self.calls.items())
        )
        content = "".join(self.content) if self.saw_content else None
        return AssistantTurn(content, calls, self.usage, self.finish_reason)
