"""`SqlMemoryStore`: memories in the registry's database, with its full-text search.

SQLite: an FTS5 table `memory_fts` over `memory_items` (external content, kept in sync by triggers, so an
insert or delete and its index update are one transaction), ranked by `bm25()`. PostgreSQL: a stored generated
column `text_search = to_tsvector('simple', text)` with a GIN index, ranked by `ts_rank`. Either way a query matches any of its words, each taken
literally (see `query_terms`). With an `Embedder`, vectors are stored as JSON and search blends the
full-text score with cosine similarity.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from functools import reduce
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import JSON, Column, ColumnElement, Index, Table, Text, column, delete, func, table, text
from sqlalchemy import cast as sql_cast
from sqlalchemy import literal_column as sql_literal
from sqlalchemy import select as sa_select
from sqlalchemy.orm import defer
from sqlmodel import Field, Session, SQLModel, col, select
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
from registry.db import translate_errors

__all__ = ["MEMORY_TABLE", "MemoryRecord", "SqlMemoryStore"]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
# Serializes concurrent first opens on PostgreSQL (any constant; the registry uses another one).
_PG_LOCK_KEY = 0x7473_6D65_6D01

_SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS memory_fts USING fts5("
    "text, content='memory_items', content_rowid='pk', tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_insert AFTER INSERT ON memory_items BEGIN "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_delete AFTER DELETE ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS memory_items_fts_update AFTER UPDATE OF text ON memory_items BEGIN "
    "INSERT INTO memory_fts(memory_fts, rowid, text) VALUES ('delete', old.pk, old.text); "
    "INSERT INTO memory_fts(rowid, text) VALUES (new.pk, new.text); END",
)
# A stored tsvector (not only an expression index): ranking and any non-index plan read it instead of
# parsing every candidate's text again. The ORM model does not map it; PostgreSQL fills it on insert.
_POSTGRES_DDL = (
    "ALTER TABLE memory_items ADD COLUMN IF NOT EXISTS text_search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, text)) STORED",
    "CREATE INDEX IF NOT EXISTS ix_memory_items_fts ON memory_items USING GIN (text_search)",
)


class MemoryRecord(SQLModel, table=True):
    """One memory row; `pk` is the full-text index's rowid, `id` the public identifier."""

    __tablename__ = "memory_items"
    __table_args__ = (
        Index("ix_memory_items_scope_created", "namespace", "scope", "created_at"),
        # Covers the vector scan (newest embedded items of a scope), which then never reads a row.
        Index("ix_memory_items_scope_vectors", "namespace", "scope", "dims", "created_at", "id"),
    )

    # Small columns first: SQLite reads a row's columns in order, and the large ones spill to overflow pages.
    pk: int | None = Field(default=None, primary_key=True)
    id: str = Field(unique=True)
    namespace: str
    scope: str
    created_at: float = Field(default_factory=time.time)
    dims: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSON, nullable=False))
    text: str = Field(sa_column=Column(Text, nullable=False))
    embedding: list[float] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )


MEMORY_TABLE = cast(Table, MemoryRecord.__table__)  # type: ignore[attr-defined]


class SqlMemoryStore(MemoryStore):
    """Memories in `db` (SQLite or PostgreSQL); creates its table and index on first use."""

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
        _ensure_schema(db)

    # -- writes --------------------------------------------------------------------------------------

    def add(
        self, namespace: str, scope: str, text: str, metadata: dict[str, Any] | None = None
    ) -> MemoryItem:
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
        check_scope(scope)
        _check_id(id)
        with self.db.session() as session:
            result = session.exec(
                delete(MemoryRecord).where(*_owned(namespace, scope), col(MemoryRecord.id) == id)
            )
            if result.rowcount != 1:
                raise _not_found(id)

    def clear(self, namespace: str, scope: str) -> int:
        check_scope(scope)
        with self.db.session() as session:
            result = session.exec(delete(MemoryRecord).where(*_owned(namespace, scope)))
            return int(result.rowcount)

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, namespace: str, scope: str, id: str) -> MemoryItem:
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


def _ensure_schema(db: Database) -> None:
    """Create `memory_items` and its full-text index if missing (idempotent, safe for concurrent openers)."""
    with translate_errors(), db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The index is made last, so it means "all done"; then no DDL runs and no lock is taken.
            if conn.execute(text("SELECT to_regclass('ix_memory_items_fts') IS NOT NULL")).scalar():
                return
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        SQLModel.metadata.create_all(conn, tables=[MEMORY_TABLE])
        for statement in _SQLITE_DDL if conn.dialect.name == "sqlite" else _POSTGRES_DDL:
            conn.exec_driver_sql(statement)


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
