"""The memory seam: `MemoryItem`, the `MemoryStore` interface, the `Embedder` hook and input checks.

A memory lives in a namespace (the tenant, always the boundary) and a scope inside it: `agent:<name>`,
`run:<id>`, `session:<id>`, `shared:<name>`, or `namespace` for the whole tenant. Stores are synchronous
(one short transaction per method); `MemoryService` runs them off the event loop.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from foundation.errors import PayloadTooLarge, ValidationFailed

__all__ = [
    "MAX_K",
    "MAX_METADATA_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_SCOPE_CHARS",
    "MAX_TEXT_BYTES",
    "SCOPE_PATTERN",
    "Embedder",
    "MemoryItem",
    "MemoryStore",
    "check_k",
    "check_metadata",
    "check_query",
    "check_scope",
    "check_text",
    "query_terms",
]

MAX_TEXT_BYTES = 64 * 1024
MAX_METADATA_BYTES = 16 * 1024
MAX_QUERY_CHARS = 2000
MAX_SCOPE_CHARS = 200
MAX_K = 100
_MAX_TERMS = 32

SCOPE_PATTERN = re.compile(r"namespace|(?:agent|run|session|shared):[A-Za-z0-9][A-Za-z0-9._@-]*")
"""`namespace`, or a kind and a name: letters, digits, `.`, `_`, `@`, `-` (no slashes: scopes sit in URLs)."""

_WORD = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class MemoryItem:
    """One remembered text; `score` is set by `search` (higher is better) and None elsewhere."""

    id: str
    namespace: str
    scope: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The item as JSON."""
        return asdict(self)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors; given to a store, search also ranks by cosine similarity."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text."""
        ...


class MemoryStore(ABC):
    """Scoped memories of a tenant. Another namespace's or scope's item is reported like a missing one."""

    @abstractmethod
    def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
        """Store a memory in `scope`; the item with its id."""
        ...

    @abstractmethod
    def search(self, namespace: str, scope: str, query: str, k: int = 5) -> list[MemoryItem]:
        """The `k` items that match `query` best, best first."""

    @abstractmethod
    def recent(self, namespace: str, scope: str, k: int = 20) -> list[MemoryItem]:
        """The `k` newest items, newest first."""

    @abstractmethod
    def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
        """One memory; NotFound when it is not in this namespace and scope."""
        ...

    @abstractmethod
    def delete(self, namespace: str, scope: str, id: str) -> None:
        """Remove one memory; NotFound when it is not in this namespace and scope."""
        ...

    @abstractmethod
    def clear(self, namespace: str, scope: str) -> int:
        """Delete every item of the scope; returns how many went."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release what the store holds (it does not close a database it was given)."""


def check_scope(scope: str) -> str:
    """`scope` if it is a valid scope name, else ValidationFailed."""
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_CHARS or not SCOPE_PATTERN.fullmatch(scope):
        raise ValidationFailed(
            f"scope must be 'namespace' or agent:/run:/session:/shared: followed by a name of letters, "
            f"digits, '.', '_', '@' or '-' (at most {MAX_SCOPE_CHARS} characters); got {str(scope)[:60]!r}",
            field="scope",
        )
    return scope


def check_text(text: str) -> str:
    """`text` if it is non-empty, NUL-free and within MAX_TEXT_BYTES; else ValidationFailed or PayloadTooLarge."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationFailed("text must be a non-empty string", field="text")
    if "\x00" in text:
        # PostgreSQL cannot store NUL in text; refusing it everywhere keeps the backends alike.
        raise ValidationFailed("text must not contain NUL characters", field="text")
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        raise PayloadTooLarge(
            f"text is {size} bytes; a memory holds at most {MAX_TEXT_BYTES}",
            field="text",
            limit=MAX_TEXT_BYTES,
        )
    return text


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON copy of `metadata` (`{}` for None) if it is a JSON object within MAX_METADATA_BYTES."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ValidationFailed("metadata must be a JSON object", field="metadata")
    try:
        encoded = json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationFailed(f"metadata must be plain JSON: {exc}", field="metadata") from None
    if len(encoded.encode("utf-8")) > MAX_METADATA_BYTES:
        raise PayloadTooLarge(
            f"metadata is over {MAX_METADATA_BYTES} bytes as JSON", field="metadata", limit=MAX_METADATA_BYTES
        )
    # A copy that went through JSON: what the caller holds afterwards cannot change what was stored.
    result: dict[str, Any] = json.loads(encoded)
    return result


def check_query(query: str) -> str:
    """`query` if it is non-empty and within MAX_QUERY_CHARS, else ValidationFailed."""
    if not isinstance(query, str) or not query.strip():
        raise ValidationFailed("the search query is empty", field="q")
    if len(query) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"the search query is over {MAX_QUERY_CHARS} characters", field="q")
    return query


def check_k(k: int) -> int:
    """`k` if it is an integer from 1 to `MAX_K`, else ValidationFailed."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValidationFailed(f"k must be an integer from 1 to {MAX_K}", field="k")
    return k


def query_terms(query: str) -> list[str]:
    """The query's whitespace-separated words that hold a letter or digit, deduplicated, at most 32.

    Stores match any of them (ranked so that items matching more, and rarer, terms come first) and treat
    each one as a literal: operators and quotes of the backend's query language have no effect.
    """
    terms: list[str] = []
    seen: set[str] = set()
    for chunk in query.replace("\x00", " ").split():
        key = chunk.casefold()
        if _WORD.search(chunk) and key not in seen:
            seen.add(key)
            terms.append(chunk)
        if len(terms) == _MAX_TERMS:
            break
    return terms
