"""Memory on a real SQLite file: the store, its full-text index, the embedder hook, and the HTTP routes.

The `Test*` classes are backend-neutral: `tests/integration/test_memory_postgres.py` re-runs them on
PostgreSQL with its own `db_url` fixture. SQLite-only checks and the route tests are module-level functions.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from agent_core.memory import MAX_TEXT_BYTES, MemoryItem, SqlMemoryStore
from foundation.errors import NotFound, PayloadTooLarge, RuntimeFailure, ValidationFailed
from registry import Database, KeyStore
from sandbox.config import SandboxConfig
from sandbox.fake import FakeBackend
from sandbox.manager import SandboxManager
from toolserver.config import Settings
from toolserver.http.app import build_services, create_app
from toolserver.nodes.local import LocalNodes

OpenDb = Callable[..., Database]
A, B = "team-a", "team-b"
SCOPE = "agent:planner"


@pytest.fixture
def store(db: Database) -> SqlMemoryStore:
    return SqlMemoryStore(db)


NOTES = [
    "The deployment pipeline runs every Friday at noon",
    "The user prefers metric units in weather reports; metric units always",
    "The database password rotates monthly",
    "The weather API key lives in the team vault",
    "Lunch is at one",
]


def _texts(items: Sequence[MemoryItem]) -> list[str]:
    return [item.text for item in items]


class TestAddAndRead:
    def test_add_returns_the_item_and_get_reads_it_back(self, store: SqlMemoryStore) -> None:
        meta = {"source": "chat", "tags": ["units"], "n": 1}
        item = store.add(A, SCOPE, "prefers metric units", meta)
        meta["n"] = 2  # the caller's dict is not what was stored
        assert item.id.startswith("mem_") and item.namespace == A and item.scope == SCOPE
        assert item.metadata == {"source": "chat", "tags": ["units"], "n": 1} and item.score is None
        again = store.get(A, SCOPE, item.id)
        assert again == item
        assert pickle.loads(pickle.dumps(again)) == again  # items cross Ray process boundaries

    def test_recent_is_newest_first_and_limited(self, store: SqlMemoryStore) -> None:
        for note in NOTES:
            store.add(A, SCOPE, note)
        assert _texts(store.recent(A, SCOPE, 3)) == NOTES[::-1][:3]
        assert len(store.recent(A, SCOPE, 100)) == len(NOTES)

    def test_every_scope_kind_is_accepted(self, store: SqlMemoryStore) -> None:
        for scope in ("namespace", "agent:planner", "run:run_abc123", "session:ses_x", "shared:team.notes-1"):
            store.add(A, scope, f"note in {scope}")
            assert _texts(store.recent(A, scope, 5)) == [f"note in {scope}"]
        longest = "agent:" + "a" * 194
        assert store.add(A, longest, "fits").scope == longest

    @pytest.mark.parametrize(
        "scope",
        [
            "",
            "agent",
            "agent:",
            "user:bob",
            "agent:a/b",
            "agent:../x",
            "agent:a b",
            "Namespace",
            "agent:" + "a" * 195,
        ],
    )
    def test_a_bad_scope_is_a_validation_error(self, store: SqlMemoryStore, scope: str) -> None:
        with pytest.raises(ValidationFailed) as error:
            store.add(A, scope, "x")
        assert error.value.field == "scope" and error.value.status == 422
        for call in (lambda: store.search(A, scope, "x"), lambda: store.recent(A, scope, 1)):
            with pytest.raises(ValidationFailed):
                call()

    def test_text_must_be_non_empty_and_within_the_cap(self, store: SqlMemoryStore) -> None:
        for bad in ("", "   \n", "a\x00b"):
            with pytest.raises(ValidationFailed) as error:
                store.add(A, SCOPE, bad)
            assert error.value.field == "text"
        assert len(store.add(A, SCOPE, "x" * MAX_TEXT_BYTES).text) == MAX_TEXT_BYTES
        for too_big in ("x" * (MAX_TEXT_BYTES + 1), "é" * (MAX_TEXT_BYTES // 2 + 1)):
            with pytest.raises(PayloadTooLarge) as big:
                store.add(A, SCOPE, too_big)
            assert big.value.status == 413
        assert len(store.recent(A, SCOPE, 10)) == 1  # nothing of the refused ones was stored

    def test_metadata_must_be_plain_json_and_small(self, store: SqlMemoryStore) -> None:
        for bad in ({"s": {1, 2}}, {"x": math.nan}, ["not", "an", "object"]):
            with pytest.raises(ValidationFailed) as error:
                store.add(A, SCOPE, "x", bad)  # type: ignore[arg-type]
            assert error.value.field == "metadata"
        with pytest.raises(PayloadTooLarge):
            store.add(A, SCOPE, "x", {"blob": "y" * 20_000})
        odd = {"nul": "a\x00b", "ünï": [1.5, None, True]}
        assert store.get(A, SCOPE, store.add(A, SCOPE, "x", odd).id).metadata == odd

    @pytest.mark.parametrize("k", [0, -1, 101])
    def test_k_is_bounded(self, store: SqlMemoryStore, k: int) -> None:
        with pytest.raises(ValidationFailed) as error:
            store.recent(A, SCOPE, k)
        assert error.value.field == "k"
        with pytest.raises(ValidationFailed):
            store.search(A, SCOPE, "x", k)

    def test_two_handles_on_one_database_share_memories(self, open_db: OpenDb) -> None:
        first, second = SqlMemoryStore(open_db()), SqlMemoryStore(open_db())
        item = first.add(A, SCOPE, "shared between handles")
        assert _texts(second.search(A, SCOPE, "handles")) == ["shared between handles"]
        second.delete(A, SCOPE, item.id)
        assert first.search(A, SCOPE, "handles") == []

    def test_concurrent_adds_are_all_kept_and_indexed(self, store: SqlMemoryStore) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: store.add(A, SCOPE, f"parallel note number{i}"), range(16)))
        assert len(store.recent(A, SCOPE, 100)) == 16
        assert len(store.search(A, SCOPE, "parallel", k=100)) == 16
        assert _texts(store.search(A, SCOPE, "number7")) == ["parallel note number7"]


class TestSearch:
    def test_the_relevant_item_comes_first(self, store: SqlMemoryStore) -> None:
        for note in NOTES:
            store.add(A, SCOPE, note)
        found = store.search(A, SCOPE, "which metric units for the weather?", k=3)
        assert found[0].text == NOTES[1]
        assert NOTES[3] in _texts(found)  # shares "weather" (and "the")
        scores = [item.score for item in found]
        assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]

    def test_k_limits_the_results_and_no_match_is_empty(self, store: SqlMemoryStore) -> None:
        for i in range(8):
            store.add(A, SCOPE, f"report number {i}")
        assert len(store.search(A, SCOPE, "report", k=3)) == 3
        assert store.search(A, SCOPE, "zeppelin") == []

    def test_words_match_case_insensitively_in_any_order(self, store: SqlMemoryStore) -> None:
        store.add(A, SCOPE, "Kubernetes Cluster upgrade finished")
        assert _texts(store.search(A, SCOPE, "CLUSTER kubernetes")) == ["Kubernetes Cluster upgrade finished"]

    def test_scopes_are_isolated(self, store: SqlMemoryStore) -> None:
        mine = store.add(A, "agent:a", "the cache key is blue")
        store.add(A, "agent:b", "the cache key is green")
        assert _texts(store.search(A, "agent:a", "cache key")) == ["the cache key is blue"]
        assert _texts(store.recent(A, "agent:a", 10)) == ["the cache key is blue"]
        with pytest.raises(NotFound):
            store.get(A, "agent:b", mine.id)
        with pytest.raises(NotFound):
            store.delete(A, "agent:b", mine.id)
        assert store.clear(A, "agent:b") == 1
        assert store.get(A, "agent:a", mine.id) == mine

    def test_tenants_are_isolated_even_with_the_right_id(self, store: SqlMemoryStore) -> None:
        secret = store.add(A, "shared:ops", "the root password is hunter2")
        assert store.search(B, "shared:ops", "root password hunter2") == []
        assert store.recent(B, "shared:ops", 10) == []
        with pytest.raises(NotFound) as other:
            store.get(B, "shared:ops", secret.id)
        with pytest.raises(NotFound) as missing:
            store.get(B, "shared:ops", "mem_aaaaaaaaaaaa")
        assert other.value.message == f"memory {secret.id!r} not found"
        assert type(other.value) is type(missing.value) and other.value.status == missing.value.status == 404
        with pytest.raises(NotFound):
            store.delete(B, "shared:ops", secret.id)
        assert store.clear(B, "shared:ops") == 0
        assert store.get(A, "shared:ops", secret.id) == secret
        assert _texts(store.search(A, "shared:ops", "hunter2")) == ["the root password is hunter2"]

    @pytest.mark.parametrize("query", ["", "   ", "\n\t"])
    def test_an_empty_query_is_a_validation_error(self, store: SqlMemoryStore, query: str) -> None:
        with pytest.raises(ValidationFailed) as error:
            store.search(A, SCOPE, query)
        assert error.value.field == "q" and error.value.status == 422

    def test_an_overlong_query_is_a_validation_error(self, store: SqlMemoryStore) -> None:
        with pytest.raises(ValidationFailed) as error:
            store.search(A, SCOPE, "word " * 1000)
        assert error.value.field == "q"

    def test_an_unknown_id_is_not_found(self, store: SqlMemoryStore) -> None:
        for bad in ("mem_aaaaaaaaaaaa", "", "x\x00y", "m" * 500, "' OR '1'='1"):
            with pytest.raises(NotFound):
                store.get(A, SCOPE, bad)
            with pytest.raises(NotFound):
                store.delete(A, SCOPE, bad)


HOSTILE_QUERIES = [
    '"',
    '""',
    '"unbalanced',
    "*",
    "secret*",
    "NEAR(",
    "NEAR(secret vault, 2)",
    "a OR",
    "OR",
    "AND NOT",
    "-secret",
    "^secret",
    "text:secret",
    "{text}: secret",
    "(",
    "secret)",
    "'",
    "' OR 1=1 --",
    "'; DROP TABLE memory_items; --",
    "\\",
    "%_%",
    "secret\x00vault",
    "::regconfig",
    "!!&|<->",
]


class TestHostileQueries:
    @pytest.mark.parametrize("query", HOSTILE_QUERIES)
    def test_query_syntax_is_taken_literally(self, store: SqlMemoryStore, query: str) -> None:
        store.add(A, SCOPE, "the secret lives in the vault")
        store.add(A, SCOPE, "secretive people")
        other = store.add(B, SCOPE, "the secret of team b is in the vault")
        found = store.search(A, SCOPE, query)
        assert all(item.namespace == A and item.scope == SCOPE for item in found)
        assert len(store.recent(A, SCOPE, 10)) == 2 and store.get(B, SCOPE, other.id) == other

    def test_operators_are_words_and_prefixes_do_not_expand(self, store: SqlMemoryStore) -> None:
        store.add(A, SCOPE, "this or that")
        store.add(A, SCOPE, "secretive people")
        store.add(A, SCOPE, "near the station")
        assert _texts(store.search(A, SCOPE, "OR")) == ["this or that"]
        assert _texts(store.search(A, SCOPE, "NEAR(")) == ["near the station"]
        assert store.search(A, SCOPE, "secret*") == []
        assert _texts(store.search(A, SCOPE, "NOT secretive")) == ["secretive people"]  # no negation

    def test_a_query_without_words_finds_nothing(self, store: SqlMemoryStore) -> None:
        store.add(A, SCOPE, "punctuation: * ( ) \" '")
        for query in ('"', "*", "( )", "'", "-- ;"):
            assert store.search(A, SCOPE, query) == []


class TestIndexStaysInSync:
    def test_a_deleted_text_is_no_longer_found(self, store: SqlMemoryStore) -> None:
        zebra = store.add(A, SCOPE, "zebra crossing")
        store.delete(A, SCOPE, zebra.id)
        # SQLite reuses the highest rowid after a delete: a stale index entry would now point at giraffe.
        store.add(A, SCOPE, "giraffe neck")
        assert store.search(A, SCOPE, "zebra") == []
        assert _texts(store.search(A, SCOPE, "giraffe")) == ["giraffe neck"]
        with pytest.raises(NotFound):
            store.delete(A, SCOPE, zebra.id)

    def test_clear_empties_the_scope_and_its_index(self, store: SqlMemoryStore) -> None:
        for note in NOTES:
            store.add(A, SCOPE, note)
        store.add(A, "agent:other", "The deployment of other things")
        assert store.clear(A, SCOPE) == len(NOTES)
        assert store.search(A, SCOPE, "deployment weather units") == [] and store.recent(A, SCOPE, 10) == []
        store.add(A, SCOPE, "fresh start")
        assert _texts(store.search(A, SCOPE, "deployment fresh")) == ["fresh start"]
        assert _texts(store.search(A, "agent:other", "deployment")) == ["The deployment of other things"]

    def test_concurrent_first_opens_do_not_collide(self, open_db: OpenDb) -> None:
        databases = [open_db() for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            stores = list(pool.map(SqlMemoryStore, databases))
        item = stores[0].add(A, SCOPE, "made after a crowded start")
        assert all(store.get(A, SCOPE, item.id) == item for store in stores)

    def test_opening_the_store_again_is_idempotent(self, db: Database) -> None:
        first = SqlMemoryStore(db)
        item = first.add(A, SCOPE, "kept across opens")
        second = SqlMemoryStore(db)
        assert second.get(A, SCOPE, item.id) == item
        assert _texts(second.search(A, SCOPE, "opens")) == ["kept across opens"]


_CONCEPTS = {
    "cat": 0,
    "cats": 0,
    "kitten": 0,
    "feline": 0,
    "car": 1,
    "tyres": 1,
    "oil": 1,
}


class ConceptEmbedder:
    """A fake embedding model: one dimension per concept, counting the words that belong to it."""

    def __init__(self, dims: int = 2) -> None:
        self.dims = dims
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        vectors = []
        for t in texts:
            vector = [0.0] * self.dims
            for word in t.lower().replace(":", " ").replace(",", " ").split():
                if word in _CONCEPTS:
                    vector[_CONCEPTS[word]] += 1.0
            vectors.append(vector)
        return vectors


CAR = "car care: care for tyres and oil"
KITTEN = "kitten care means vaccines, grooming and a warm basket"


class TestEmbedder:
    def test_the_embedder_changes_the_ranking(self, db: Database) -> None:
        embedder = ConceptEmbedder()
        plain, semantic = SqlMemoryStore(db), SqlMemoryStore(db, embedder)
        semantic.add(A, SCOPE, KITTEN)
        semantic.add(A, SCOPE, CAR)
        assert embedder.calls == [[KITTEN], [CAR]]
        assert _texts(plain.search(A, SCOPE, "cat care")) == [CAR, KITTEN]  # "care" twice beats once
        ranked = semantic.search(A, SCOPE, "cat care")
        assert _texts(ranked) == [KITTEN, CAR]
        assert embedder.calls[-1] == ["cat care"]
        assert (
            ranked[0].score is not None and ranked[1].score is not None and ranked[0].score > ranked[1].score
        )

    def test_meaning_alone_finds_an_item_without_a_common_word(self, db: Database) -> None:
        semantic = SqlMemoryStore(db, ConceptEmbedder())
        semantic.add(A, SCOPE, KITTEN)
        semantic.add(A, SCOPE, CAR)
        assert SqlMemoryStore(db).search(A, SCOPE, "feline") == []
        assert _texts(semantic.search(A, SCOPE, "feline")) == [
            KITTEN
        ]  # the car is neither similar nor a match
        assert _texts(semantic.search(A, SCOPE, "*")) == []  # no words, no concept

    def test_vector_search_keeps_tenants_and_scopes_apart(self, db: Database) -> None:
        semantic = SqlMemoryStore(db, ConceptEmbedder())
        semantic.add(A, SCOPE, KITTEN)
        semantic.add(A, "agent:other", "feline friends")
        semantic.add(B, SCOPE, "kitten of team b")
        assert _texts(semantic.search(A, SCOPE, "feline cat")) == [KITTEN]
        assert _texts(semantic.search(B, SCOPE, "feline")) == ["kitten of team b"]

    def test_items_stored_without_vectors_or_with_another_size_still_work(self, db: Database) -> None:
        SqlMemoryStore(db).add(A, SCOPE, "cat facts without a vector")
        SqlMemoryStore(db, ConceptEmbedder(dims=3)).add(A, SCOPE, "cat with a bigger vector")
        semantic = SqlMemoryStore(db, ConceptEmbedder())
        semantic.add(A, SCOPE, KITTEN)
        assert set(_texts(semantic.search(A, SCOPE, "cat", k=10))) == {
            "cat facts without a vector",
            "cat with a bigger vector",
            KITTEN,
        }

    def test_cached_and_evicted_vectors_rank_alike(self, db: Database) -> None:
        writer = SqlMemoryStore(db, ConceptEmbedder())
        for note in (KITTEN, CAR, "feline facts", "oil change", "cats and tyres"):
            writer.add(A, SCOPE, note)
        tiny_cache = SqlMemoryStore(db, ConceptEmbedder(), vector_cache_floats=4)  # holds two vectors
        for query in ("feline", "car oil", "cat tyres"):
            first = writer.search(A, SCOPE, query, k=5)
            assert writer.search(A, SCOPE, query, k=5) == first  # second time from the cache
            assert tiny_cache.search(A, SCOPE, query, k=5) == first
        gone = writer.search(A, SCOPE, "feline", k=1)[0]
        writer.delete(A, SCOPE, gone.id)
        assert gone.id not in [item.id for item in writer.search(A, SCOPE, "feline", k=5)]

    def test_a_broken_embedder_fails_the_call_and_stores_nothing(self, db: Database) -> None:
        class Broken:
            def __init__(self, result: Any) -> None:
                self.result = result

            def embed(self, texts: Sequence[str]) -> list[list[float]]:
                if isinstance(self.result, Exception):
                    raise self.result
                return self.result  # type: ignore[no-any-return]

        for result in (
            ConnectionError("model server down"),
            None,
            [],
            [[]],
            [[math.inf]],
            [["x"]],
            [[1.0], [2.0]],
        ):
            with pytest.raises(RuntimeFailure):
                SqlMemoryStore(db, Broken(result)).add(A, SCOPE, "never stored")
        assert SqlMemoryStore(db).recent(A, SCOPE, 10) == []


# -- SQLite only --------------------------------------------------------------------------------------


def test_sqlite_index_rows_follow_inserts_and_deletes(db: Database, store: SqlMemoryStore) -> None:
    kept = store.add(A, SCOPE, "alpha beta")
    gone = store.add(A, SCOPE, "gamma delta")
    store.delete(A, SCOPE, gone.id)
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT rowid FROM memory_fts WHERE memory_fts MATCH 'gamma OR alpha'")
        ).all()
        assert len(rows) == 1
        (pk,) = conn.execute(text("SELECT pk FROM memory_items WHERE id = :id"), {"id": kept.id}).one()
        assert rows[0][0] == pk
        conn.execute(text("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)"))


def test_a_rolled_back_insert_leaves_no_index_row(db: Database, store: SqlMemoryStore) -> None:
    insert = text(
        "INSERT INTO memory_items(id, namespace, scope, text, metadata, created_at) "
        "VALUES ('mem_rolledback00', :ns, :scope, 'orphan words', '{}', 0)"
    )
    with pytest.raises(RuntimeError), db.session() as session:
        session.connection().execute(insert, {"ns": A, "scope": SCOPE})
        raise RuntimeError("the rest of the transaction failed")
    assert store.search(A, SCOPE, "orphan") == []
    with db.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'orphan'")).scalar()
            == 0
        )


# -- HTTP routes (the full app, with the memory router included) --------------------------------------


@pytest.fixture
async def http(tmp_path: Path) -> Any:
    settings = Settings(home=tmp_path, max_body_mb=1, pool_size=0)
    db = Database(settings.database)
    manager = SandboxManager(SandboxConfig(pool_size=0, node_id="node-a"), backend=FakeBackend("node-a"))
    services = build_services(settings, db, LocalNodes({"node-a": manager}))
    app = create_app(services)
    _, key_a = KeyStore(db).create(A, "a")
    _, key_b = KeyStore(db).create(B, "b")
    transport = httpx.ASGITransport(app=app)
    clients = {
        name: httpx.AsyncClient(
            transport=transport,
            base_url="http://test",
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )
        for name, key in (("a", key_a), ("b", key_b), ("anon", None))
    }
    yield clients
    for client in clients.values():
        await client.aclose()
    await manager.shutdown()
    db.close()


async def test_http_add_search_recent_get_delete(http: Any) -> None:
    a = http["a"]
    created = await a.post(f"/v1/memory/{SCOPE}", json={"text": "prefers metric units", "metadata": {"s": 1}})
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["scope"] == SCOPE and item["metadata"] == {"s": 1} and item["id"].startswith("mem_")
    await a.post(f"/v1/memory/{SCOPE}", json={"text": "deploys on fridays"})
    found = await a.get(f"/v1/memory/{SCOPE}/search", params={"q": "metric units", "k": 3})
    assert found.status_code == 200 and [i["id"] for i in found.json()["items"]] == [item["id"]]
    assert found.json()["items"][0]["score"] > 0
    recent = (await a.get(f"/v1/memory/{SCOPE}", params={"k": 5})).json()["items"]
    assert [i["text"] for i in recent] == ["deploys on fridays", "prefers metric units"]
    assert (await a.get(f"/v1/memory/{SCOPE}/{item['id']}")).json() == item
    deleted = await a.delete(f"/v1/memory/{SCOPE}/{item['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    again = await a.delete(f"/v1/memory/{SCOPE}/{item['id']}")
    assert again.status_code == 404 and again.json()["error"]["type"] == "not_found"
    assert (await a.get(f"/v1/memory/{SCOPE}/search", params={"q": "metric"})).json()["items"] == []
    cleared = await a.delete(f"/v1/memory/{SCOPE}")
    assert cleared.status_code == 200 and cleared.json() == {"deleted": 1}


async def test_http_the_callers_namespace_is_the_boundary(http: Any) -> None:
    item = (
        await http["a"].post("/v1/memory/shared:ops", json={"text": "the root password is hunter2"})
    ).json()
    b = http["b"]
    assert (await b.get("/v1/memory/shared:ops/search", params={"q": "hunter2"})).json()["items"] == []
    assert (await b.get("/v1/memory/shared:ops")).json()["items"] == []
    theirs = await b.get(f"/v1/memory/shared:ops/{item['id']}")
    missing = await b.get("/v1/memory/shared:ops/mem_aaaaaaaaaaaa")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["message"].replace(item["id"], "X") == missing.json()["error"][
        "message"
    ].replace("mem_aaaaaaaaaaaa", "X")
    assert (await b.delete(f"/v1/memory/shared:ops/{item['id']}")).status_code == 404
    assert (await b.delete("/v1/memory/shared:ops")).json() == {"deleted": 0}
    still = await http["a"].get("/v1/memory/shared:ops/search", params={"q": "hunter2"})
    assert [i["id"] for i in still.json()["items"]] == [item["id"]]


async def test_http_errors_are_clear(http: Any) -> None:
    a = http["a"]
    assert (await http["anon"].get(f"/v1/memory/{SCOPE}")).status_code == 401
    bad_scope = await a.post("/v1/memory/user:bob", json={"text": "x"})
    assert bad_scope.status_code == 422 and bad_scope.json()["error"]["field"] == "scope"
    empty_q = await a.get(f"/v1/memory/{SCOPE}/search", params={"q": "  "})
    assert empty_q.status_code == 422 and empty_q.json()["error"]["field"] == "q"
    no_q = await a.get(f"/v1/memory/{SCOPE}/search")
    assert no_q.status_code == 422 and no_q.json()["error"]["field"] == "query.q"
    bad_k = await a.get(f"/v1/memory/{SCOPE}/search", params={"q": "x", "k": 0})
    assert bad_k.status_code == 422 and bad_k.json()["error"]["field"] == "query.k"
    empty_text = await a.post(f"/v1/memory/{SCOPE}", json={"text": ""})
    assert empty_text.status_code == 422 and empty_text.json()["error"]["field"] == "text"
    extra = await a.post(f"/v1/memory/{SCOPE}", json={"text": "x", "colour": "red"})
    assert extra.status_code == 422
    big = await a.post(f"/v1/memory/{SCOPE}", json={"text": "x" * (MAX_TEXT_BYTES + 1)})
    assert big.status_code == 413 and big.json()["error"]["type"] == "payload_too_large"
    hostile = await a.get(f"/v1/memory/{SCOPE}/search", params={"q": 'NEAR("a" *) OR \'; --'})
    assert hostile.status_code == 200 and hostile.json() == {"items": []}
    assert (await a.get(f"/v1/memory/{SCOPE}")).json()["items"] == []
