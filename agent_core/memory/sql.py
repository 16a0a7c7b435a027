"""`SqlMemoryStore`: memories in the registry's database, with its full-text search.

The table `memory_items` (`registry.models.MemoryRecord`) and its full-text index are part of the registry's
schema, made by its migrations. SQLite: an FTS5 table `memory_fts` over `memory_items` (external content,
kept in sync by triggers, so an insert or delete and its index update are one transaction), ranked by
`bm25()`. PostgreSQL: a stored generated column `text_search = to_tsvector('simple', text)` with a GIN index,
ranked by `ts_rank`. Either way a query matches any of its words, each taken
literally (see `query_terms`). With an `Embedder`, vectors are stored as JSON and search blends the
full-text score with cosine similarity.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import reduce
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import ColumnElement, Text, column, delete, func, table
from sqlalchemy import cast as sql_cast
from sqlalchemy import literal_column as sql_literal
from sqlalchemy import select as sa_select
from sqlalchemy.orm import defer
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from agent_core.memory.base import (
    Embedder,
    MemoryItem,
    MemoryStore,
    check_k,
    check_metadata,
    check_query,
    check_scope,
    check_text,
    query_terms,
)
from foundation.errors import NotFound, RuntimeFailure, ToolServerError
from registry import Database
from registry.models import MEMORY_TABLE, MemoryRecord

__all__ = ["MEMORY_TABLE", "MemoryRecord", "SqlMemoryStore"]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


class SqlMemoryStore(MemoryStore):
    """Memories in `db` (SQLite or PostgreSQL), whose schema `Database(url)` brought up to date."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder | None = None,
        *,
        semantic_weight: float = 0.5,
        vector_scan_limit: int = 5000,
        vector_cache_floats: int = 16_000_000,
    ) -> None:
        if not 0.0 <= semantic_weight <= 1.0:
            raise ValueError("semantic_weight must be between 0 and 1")
        self.db = db
        self.embedder = embedder
        self.semantic_weight = semantic_weight
        self.vector_scan_limit = vector_scan_limit
        self._vectors = _VectorCache(vector_cache_floats)

    # -- writes --------------------------------------------------------------------------------------

    def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
        """Store a memory in `scope`, with its embedding when there is an embedder."""
        check_scope(scope)
        check_text(text)
        meta = check_metadata(metadata)
        vector = self._embed(text) if self.embedder is not None else None
        record = MemoryRecord(
            id=_new_id(),
            namespace=namespace,
            scope=scope,
            text=text,
            meta=meta,
            embedding=vector,
            dims=None if vector is None else len(vector),
        )
        with self.db.session() as session:
            session.add(record)
        return _item(record)

    def delete(self, namespace: str, scope: str, id: str) -> None:
        """Remove one memory; NotFound when it is not in this namespace and scope."""
        check_scope(scope)
        _check_id(id)
        with self.db.session() as session:
            result = session.exec(
                delete(MemoryRecord).where(*_owned(namespace, scope), col(MemoryRecord.id) == id)
            )
            if result.rowcount != 1:
                raise _not_found(id)

    def clear(self, namespace: str, scope: str) -> int:
        """Remove every memory of `scope`; how many there were."""
        check_scope(scope)
        with self.db.session() as session:
            result = session.exec(delete(MemoryRecord).where(*_owned(namespace, scope)))
            return int(result.rowcount)

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
        """One memory; NotFound when it is not in this namespace and scope."""
        check_scope(scope)
        _check_id(id)
        with self.db.session(write=False) as session:
            record = session.exec(
                _records().where(*_owned(namespace, scope), col(MemoryRecord.id) == id)
            ).first()
        if record is None:
            raise _not_found(id)
        return _item(record)

    def recent(self, namespace: str, scope: str, k: int = 20) -> list[MemoryItem]:
        """The `k` newest memories of `scope`."""
        check_scope(scope)
        check_k(k)
        query = (
            _records()
            .where(*_owned(namespace, scope))
            .order_by(col(MemoryRecord.created_at).desc(), col(MemoryRecord.pk).desc())
            .limit(k)
        )
        with self.db.session(write=False) as session:
            return [_item(record) for record in session.exec(query).all()]

    def search(self, namespace: str, scope: str, query: str, k: int = 5) -> list[MemoryItem]:
        """The `k` memories of `scope` closest to `query`."""
        check_scope(scope)
        check_query(query)
        check_k(k)
        terms = query_terms(query)
        if self.embedder is None:
            if not terms:
                return []
            with self.db.session(write=False) as session:
                hits = self._text_hits(session, namespace, scope, terms, k)
            return [_item(record, score) for record, score in hits]
        query_vector = self._embed(query)  # before the transaction: an embedder may be a slow remote call
        pool = max(4 * k, 50)
        with self.db.session(write=False) as session:
            hits = self._text_hits(session, namespace, scope, terms, pool) if terms else []
            similar = self._vector_hits(session, namespace, scope, query_vector, pool)
            known = {_pk(record) for record, _ in hits}
            missing = [pk for pk in similar if pk not in known]
            extra = session.exec(_records().where(col(MemoryRecord.pk).in_(missing))).all() if missing else []
        best_text = max((score for _, score in hits), default=0.0)
        candidates = {_pk(record): record for record, _ in hits} | {_pk(record): record for record in extra}
        text_scores = {_pk(record): score / best_text if best_text > 0 else 0.0 for record, score in hits}
        w = self.semantic_weight
        blended = [
            (record, (1 - w) * text_scores.get(pk, 0.0) + w * similar.get(pk, 0.0))
            for pk, record in candidates.items()
        ]
        # Neither a word in common nor a similar meaning: not a result, even when fewer than k are left.
        blended = [(record, score) for record, score in blended if score > 0]
        blended.sort(key=lambda pair: (-pair[1], -pair[0].created_at))
        return [_item(record, score) for record, score in blended[:k]]

    # -- internals -----------------------------------------------------------------------------------

    def _text_hits(
        self, session: Session, namespace: str, scope: str, terms: list[str], limit: int
    ) -> list[tuple[MemoryRecord, float]]:
        if self.db.dialect == "sqlite":
            fts = table("memory_fts", column("rowid"))
            fts_ref: ColumnElement[Any] = sql_literal("memory_fts")
            rank = func.bm25(fts_ref)
            # Every term becomes an FTS5 string ("..." with quotes doubled): no operator, column filter,
            # prefix or NEAR syntax of the user's survives; the strings are OR-ed.
            match = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
            statement = (
                select(MemoryRecord, (-rank).label("score"))
                .options(_NO_VECTOR)
                .select_from(fts)
                .join(MemoryRecord, col(MemoryRecord.pk) == fts.c.rowid)
                .where(fts_ref.op("MATCH")(match), *_owned(namespace, scope))
                .order_by(rank)
                .limit(limit)
            )
        else:
            config: ColumnElement[Any] = sql_literal("'simple'::regconfig")
            vector: ColumnElement[Any] = sql_literal("memory_items.text_search")
            # Each term is a bound parameter, turned into a tsquery by PostgreSQL: no query syntax survives.
            parts: list[ColumnElement[Any]] = [func.plainto_tsquery(config, term) for term in terms]
            tsquery = reduce(lambda left, right: left.op("||")(right), parts)
            ts_rank = func.ts_rank(vector, tsquery)
            statement = (
                select(MemoryRecord, ts_rank.label("score"))
                .options(_NO_VECTOR)
                .where(vector.op("@@")(tsquery), *_owned(namespace, scope))
                .order_by(ts_rank.desc(), col(MemoryRecord.created_at).desc())
                .limit(limit)
            )
        return [(record, float(score)) for record, score in session.exec(statement).all()]

    def _vector_hits(
        self, session: Session, namespace: str, scope: str, query_vector: list[float], limit: int
    ) -> dict[int, float]:
        """pk -> cosine similarity of the `limit` most similar of the scope's newest embedded items."""
        query = _unit(np.asarray(query_vector, dtype=np.float32))
        if not np.any(query):
            return {}
        items = MEMORY_TABLE.c
        # A Core query: thousands of (pk, id) pairs are much cheaper as plain rows than through the ORM.
        rows = (
            session.connection()
            .execute(
                sa_select(items.pk, items.id)
                .where(items.namespace == namespace, items.scope == scope, items.dims == len(query))
                .order_by(items.created_at.desc())
                .limit(self.vector_scan_limit)
            )
            .all()
        )
        vectors = self._vectors.get_many([id for _, id in rows])
        missing = [id for _, id in rows if id not in vectors]
        for start in range(0, len(missing), 500):
            # Parsing JSON is the slow part (~0.1 ms per 384 numbers), hence the cache of parsed vectors.
            raw = session.exec(
                select(col(MemoryRecord.id), sql_cast(col(MemoryRecord.embedding), Text)).where(
                    col(MemoryRecord.id).in_(missing[start : start + 500])
                )
            ).all()
            for id, encoded in raw:
                vectors[id] = self._vectors.put(id, _unit(np.asarray(json.loads(encoded), dtype=np.float32)))
        usable = [(pk, vectors[id]) for pk, id in rows if id in vectors]
        if not usable:
            return {}
        similarity = np.stack([vector for _, vector in usable]) @ query
        best = np.argsort(-similarity)[:limit]
        return {cast(int, usable[i][0]): float(similarity[i]) for i in best}

    def _embed(self, text: str) -> list[float]:
        assert self.embedder is not None
        try:
            vectors = self.embedder.embed([text])
        except ToolServerError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"the embedder failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(vectors, (list, tuple)) or len(vectors) != 1 or not _is_vector(vectors[0]):
            raise RuntimeFailure("the embedder must return one non-empty list of finite numbers per text")
        return [float(x) for x in vectors[0]]


class _VectorCache:
    """Parsed, unit-length vectors by item id, least recently used out first (ids are never reused)."""

    def __init__(self, max_floats: int) -> None:
        self._max = max_floats
        self._size = 0
        self._items: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, ids: list[str]) -> dict[str, NDArray[np.float32]]:
        found = {}
        with self._lock:
            for id in ids:
                vector = self._items.get(id)
                if vector is not None:
                    self._items.move_to_end(id)
                    found[id] = vector
        return found

    def put(self, id: str, vector: NDArray[np.float32]) -> NDArray[np.float32]:
        with self._lock:
            if id not in self._items and vector.size <= self._max:
                self._items[id] = vector
                self._size += vector.size
                while self._size > self._max:
                    _, old = self._items.popitem(last=False)
                    self._size -= old.size
        return vector


def _unit(vector: NDArray[np.float32]) -> NDArray[np.float32]:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 and np.isfinite(norm) else np.zeros_like(vector)


# Records are loaded without their vector (the largest column) unless a search needs it.
_NO_VECTOR = defer(cast(Any, MemoryRecord.embedding))


def _records() -> SelectOfScalar[MemoryRecord]:
    return select(MemoryRecord).options(_NO_VECTOR)


def _owned(namespace: str, scope: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return col(MemoryRecord.namespace) == namespace, col(MemoryRecord.scope) == scope


def _pk(record: MemoryRecord) -> int:
    assert record.pk is not None  # set by the database on insert
    return record.pk


def _item(record: MemoryRecord, score: float | None = None) -> MemoryItem:
    return MemoryItem(
        id=record.id,
        namespace=record.namespace,
        scope=record.scope,
        text=record.text,
        metadata=dict(record.meta or {}),
        created_at=record.created_at,
        score=score,
    )


def _new_id() -> str:
    return "mem_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def _check_id(id: str) -> None:
    # No stored id holds NUL (which PostgreSQL would refuse as a parameter) or is this long.
    if "\x00" in id or len(id) > 200:
        raise _not_found(id[:200])


def _not_found(id: str) -> NotFound:
    # One message for "missing", "another scope" and "another namespace".
    return NotFound(f"memory {id!r} not found")


def _is_vector(value: Sequence[Any]) -> bool:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return array.ndim == 1 and array.size > 0 and bool(np.all(np.isfinite(array)))
