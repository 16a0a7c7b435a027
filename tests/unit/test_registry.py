"""Registry stores on a real SQLite file.

The `Test*` classes are backend-neutral: `tests/integration/test_registry_postgres.py` runs the same classes
against PostgreSQL by providing its own `db_url` fixture. SQLite-only checks are the module-level functions.
"""

from __future__ import annotations

import hashlib
import pickle
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from sqlmodel import select

from foundation.errors import Conflict, NotFound, ValidationFailed
from registry import (
    KEY_PREFIX,
    SHARED_NAMESPACE,
    AgentStore,
    ApiKey,
    AuditStore,
    Database,
    HumanRequest,
    HumanRequestStore,
    KeyStore,
    RegistryUnavailable,
    RunStore,
    Secret,
    SecretBox,
    SecretStore,
    SecretUnreadable,
    SessionStore,
    ToolStore,
)

OpenDb = Callable[..., Database]


def _in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


class TestKeyStore:
    def test_create_returns_a_secret_that_is_never_stored(self, db: Database) -> None:
        record, secret = KeyStore(db).create("team-a", "ci")
        assert secret.startswith(KEY_PREFIX) and len(secret) > 40
        assert record.key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret.startswith(record.prefix) and len(record.prefix) < 16
        with db.session() as session:
            row = session.get(ApiKey, record.id)
        assert row is not None and secret not in row.model_dump().values()

    def test_verify_accepts_only_live_keys(self, db: Database) -> None:
        keys = KeyStore(db)
        record, secret = keys.create("team-a", "ci")
        verified = keys.verify(secret)
        assert verified is not None and verified.id == record.id and verified.namespace == "team-a"
        assert keys.verify(secret + "x") is None
        assert keys.verify("") is None
        assert keys.verify(KEY_PREFIX + "wrong") is None
        keys.revoke(record.id)
        assert keys.verify(secret) is None
        assert keys.revoke(record.id).revoked_at is not None  # idempotent

    def test_list_and_revoke(self, db: Database) -> None:
        keys = KeyStore(db)
        a1, _ = keys.create("team-a", "one")
        a2, _ = keys.create("team-a", "two")
        b1, _ = keys.create("team-b", "one")
        assert [k.id for k in keys.list("team-a")] == [a1.id, a2.id]
        assert {k.id for k in keys.list()} == {a1.id, a2.id, b1.id}
        keys.revoke(a1.id)
        assert [k.id for k in keys.list("team-a")] == [a2.id]
        assert [k.id for k in keys.list("team-a", include_revoked=True)] == [a1.id, a2.id]
        with pytest.raises(NotFound):
            keys.revoke("key_missing")

    def test_namespace_must_be_a_plain_name(self, db: Database) -> None:
        for bad in ["", "Team", "a/b", "-x", SHARED_NAMESPACE, "x" * 64]:
            with pytest.raises(ValidationFailed):
                KeyStore(db).create(bad)

    def test_ensure_admin_is_idempotent(self, db: Database) -> None:
        keys = KeyStore(db)
        first = keys.ensure_admin("a-configured-admin-secret")
        second = keys.ensure_admin("a-configured-admin-secret")
        assert first.id == second.id and first.is_admin
        verified = keys.verify("a-configured-admin-secret")
        assert verified is not None and verified.is_admin
        assert len(keys.list(include_revoked=True)) == 1
        keys.revoke(first.id)
        with pytest.raises(Conflict):
            keys.ensure_admin("a-configured-admin-secret")

    def test_ensure_admin_from_many_threads_stores_one_key(self, db: Database) -> None:
        ids = _in_threads(8, lambda _: KeyStore(db).ensure_admin("same-secret-everywhere").id)
        assert len(set(ids)) == 1


class TestToolStore:
    def test_register_again_adds_a_version(self, db: Database) -> None:
        tools = ToolStore(db)
        v1 = tools.register("team-a", "add", kind="python", description="one")
        v2 = tools.register("team-a", "add", kind="python", description="two")
        assert (v1.version, v2.version) == (1, 2)
        assert tools.get("team-a", "add").description == "two"
        assert [t.version for t in tools.versions("team-a", "add")] == [1, 2]
        assert [(t.name, t.version) for t in tools.list("team-a")] == [("add", 2)]

    def test_delete_hides_every_version_and_reregister_starts_a_new_one(self, db: Database) -> None:
        tools = ToolStore(db)
        tools.register("team-a", "add", kind="python")
        tools.register("team-a", "add", kind="python")
        tools.delete("team-a", "add")
        with pytest.raises(NotFound):
            tools.get("team-a", "add")
        with pytest.raises(NotFound):
            tools.delete("team-a", "add")
        assert tools.list("team-a") == []
        again = tools.register("team-a", "add", kind="http", config={"url": "http://127.0.0.1/x"})
        assert again.version == 3
        assert tools.get("team-a", "add").kind == "http"
        assert [(t.version, t.deleted) for t in tools.versions("team-a", "add")] == [
            (1, True),
            (2, True),
            (3, False),
        ]

    def test_schema_and_config_round_trip_in_order(self, db: Database) -> None:
        parameters = {
            "type": "object",
            "properties": {
                "zeta": {"type": "string"},
                "alpha": {"type": "integer"},
                "mid": {"type": "number"},
            },
            "required": ["zeta"],
        }
        config = {"url": "http://127.0.0.1:9/api", "method": "POST", "header_secrets": {"X-Key": "api_key"}}
        ToolStore(db).register("team-a", "call", kind="http", parameters=parameters, config=config)
        tool = ToolStore(db).get("team-a", "call")
        assert tool.parameters == parameters and list(tool.parameters["properties"]) == [
            "zeta",
            "alpha",
            "mid",
        ]
        assert tool.config == config

    def test_shared_tools_are_visible_to_every_namespace(self, db: Database) -> None:
        tools = ToolStore(db)
        tools.register(SHARED_NAMESPACE, "shell", kind="builtin")
        tools.register("team-a", "add", kind="python")
        assert [t.name for t in tools.list("team-a")] == ["add", "shell"]
        assert [t.name for t in tools.list("team-b")] == ["shell"]
        assert [t.name for t in tools.list("team-a", include_shared=False)] == ["add"]
        assert tools.get("team-b", "shell").namespace == SHARED_NAMESPACE
        with pytest.raises(NotFound):
            tools.get("team-b", "shell", include_shared=False)
        with pytest.raises(Conflict):
            tools.register("team-a", "shell", kind="python")
        with pytest.raises(NotFound):
            tools.delete("team-a", "shell")  # a tenant cannot remove a shared tool
        assert tools.get("team-a", "shell").namespace == SHARED_NAMESPACE

    def test_namespaces_cannot_see_or_delete_each_others_tools(self, db: Database) -> None:
        tools = ToolStore(db)
        tools.register("team-a", "secret-tool", kind="python")
        assert tools.list("team-b") == []
        for attempt in (
            lambda: tools.get("team-b", "secret-tool"),
            lambda: tools.delete("team-b", "secret-tool"),
            lambda: tools.versions("team-b", "secret-tool"),
        ):
            with pytest.raises(NotFound):
                attempt()
        assert tools.get("team-a", "secret-tool").version == 1
        assert tools.register("team-b", "secret-tool", kind="python").version == 1  # its own, separate

    def test_concurrent_registrations_get_distinct_versions(self, db: Database) -> None:
        _in_threads(8, lambda i: ToolStore(db).register("team-a", "busy", kind="python", description=str(i)))
        assert [t.version for t in ToolStore(db).versions("team-a", "busy")] == list(range(1, 9))


class TestSecretStore:
    def test_put_get_replace_list_delete(self, db: Database) -> None:
        store = SecretStore(db)
        store.put("team-a", "api_key", "one")
        store.put("team-a", "api_key", "two")
        store.put("team-a", "other", "x")
        assert store.get("team-a", "api_key") == "two"
        assert store.list("team-a") == ["api_key", "other"]
        assert store.resolve("team-a", ["other", "api_key"]) == {"api_key": "two", "other": "x"}
        with pytest.raises(NotFound, match="missing"):
            store.resolve("team-a", ["api_key", "missing"])
        store.delete("team-a", "other")
        assert store.list("team-a") == ["api_key"]

    def test_namespaces_are_isolated(self, db: Database) -> None:
        store = SecretStore(db)
        store.put("team-a", "api_key", "a-value")
        assert store.list("team-b") == []
        with pytest.raises(NotFound):
            store.get("team-b", "api_key")
        with pytest.raises(NotFound):
            store.delete("team-b", "api_key")
        store.put("team-b", "api_key", "b-value")
        assert store.get("team-a", "api_key") == "a-value"

    def test_values_are_sealed_at_rest_and_bound_to_their_row(self, db: Database) -> None:
        box = SecretBox(SecretBox.new_key())
        store = SecretStore(db, box)
        store.put("team-a", "api_key", "sk-plain-text-value")
        store.put("team-b", "api_key", "sk-other-tenant")
        raw = _raw_secrets(db)
        assert all(value.startswith("aesgcm1:") for value in raw.values())
        assert not any("sk-" in value for value in raw.values())
        assert store.get("team-a", "api_key") == "sk-plain-text-value"
        assert store.resolve("team-b", ["api_key"]) == {"api_key": "sk-other-tenant"}
        # A sealed value copied into another tenant's row does not open there.
        _write_raw_secret(db, "team-b", "api_key", raw[("team-a", "api_key")])
        with pytest.raises(SecretUnreadable, match="api_key"):
            store.get("team-b", "api_key")
        # Another key opens nothing, and a server with it is refused at start.
        store.check_key()
        stranger = SecretStore(db, SecretBox(SecretBox.new_key()))
        with pytest.raises(SecretUnreadable):
            stranger.get("team-a", "api_key")
        with pytest.raises(SecretUnreadable, match="TOOLSERVER_SECRETS_KEY"):
            stranger.check_key()
        store.check_key()
        assert store.list("team-a") == ["api_key"]

    def test_values_from_before_encryption_are_read_then_sealed(self, db: Database) -> None:
        SecretStore(db).put("team-a", "old", "legacy-value")  # no box: stored as given
        store = SecretStore(db, SecretBox(SecretBox.new_key()))
        assert store.get("team-a", "old") == "legacy-value"
        assert store.seal_plaintext() == 1 and store.seal_plaintext() == 0
        assert _raw_secrets(db)[("team-a", "old")].startswith("aesgcm1:")
        assert store.get("team-a", "old") == "legacy-value"

    def test_malformed_keys_are_refused(self) -> None:
        for key in ("", "short", "!" * 43, SecretBox.new_key()[:-2]):
            with pytest.raises(ValueError, match="32 bytes"):
                SecretBox(key)


class TestSessionStore:
    def test_lifecycle(self, db: Database) -> None:
        store = SessionStore(db)
        record = store.create(
            "team-a", node_id="node-1", image="img:1", limits={"memory_mb": 512}, ttl_s=60, now=1000.0
        )
        assert record.id.startswith("ses_") and record.status == "creating" and record.expires_at == 1060.0
        running = store.update_status("team-a", record.id, "running", container_id="c0ffee")
        assert (running.status, running.container_id) == ("running", "c0ffee")
        fetched = store.get("team-a", record.id)
        assert fetched.limits == {"memory_mb": 512} and fetched.container_id == "c0ffee"
        assert store.touch("team-a", record.id, now=1050.0).expires_at == 1110.0
        assert store.expired(now=1100.0) == []
        assert [s.id for s in store.expired(now=1110.0)] == [record.id]
        store.update_status("team-a", record.id, "expired")
        assert store.expired(now=2000.0) == []
        assert store.list("team-a") == []
        assert [s.status for s in store.list("team-a", include_ended=True)] == ["expired"]

    def test_given_id_and_live_listing(self, db: Database) -> None:
        store = SessionStore(db)
        store.create("team-a", node_id="node-1", session_id="ses_aaaaaaaaaaaa", status="running")
        store.create("team-b", node_id="node-2", session_id="ses_bbbbbbbbbbbb", status="running")
        gone = store.create("team-b", node_id="node-2")
        store.update_status("team-b", gone.id, "deleted")
        with pytest.raises(Conflict):
            store.create("team-b", node_id="node-2", session_id="ses_aaaaaaaaaaaa")
        assert [s.id for s in store.list_all_live()] == ["ses_aaaaaaaaaaaa", "ses_bbbbbbbbbbbb"]
        assert [s.id for s in store.list_all_live(node_id="node-2")] == ["ses_bbbbbbbbbbbb"]
        with pytest.raises(ValueError):
            store.update_status("team-a", "ses_aaaaaaaaaaaa", "bogus")  # type: ignore[arg-type]

    def test_another_namespace_sees_not_found_exactly_like_missing(self, db: Database) -> None:
        store = SessionStore(db)
        record = store.create("team-a", node_id="node-1", ttl_s=60)
        with pytest.raises(NotFound) as foreign:
            store.get("team-b", record.id)
        store.update_status("team-a", record.id, "running")
        with pytest.raises(NotFound) as missing:
            store.get("team-b", "ses_doesnotexist")
        assert str(foreign.value) == str(missing.value).replace("ses_doesnotexist", record.id)
        assert type(foreign.value) is type(missing.value)
        assert store.list("team-b") == []
        for attempt in (
            lambda: store.update_status("team-b", record.id, "deleted"),
            lambda: store.touch("team-b", record.id),
        ):
            with pytest.raises(NotFound):
                attempt()
        assert store.get("team-a", record.id).status == "running"


class TestAuditStore:
    def test_record_and_list_newest_first(self, db: Database) -> None:
        audit = AuditStore(db)
        audit.record(
            "team-a", "add", "ok", key_id="key_1", duration_ms=1.5, request_bytes=10, response_bytes=20
        )
        audit.record("team-a", "shell", "error", error_type="timeout", session_id="ses_x")
        audit.record("team-b", "add", "ok")
        entries = audit.list("team-a")
        assert [(e.tool, e.status, e.error_type) for e in entries] == [
            ("shell", "error", "timeout"),
            ("add", "ok", None),
        ]
        assert entries[1].request_bytes == 10 and entries[1].duration_ms == 1.5
        assert len(audit.list("team-a", limit=1)) == 1
        assert [e.namespace for e in audit.list("team-b")] == ["team-b"]

    def test_prune(self, db: Database) -> None:
        audit = AuditStore(db)
        old = audit.record("team-a", "add", "ok")
        assert audit.prune(before=old.created_at) == 0
        assert audit.prune(before=old.created_at + 1) == 1
        assert audit.list("team-a") == []


class TestAgentStore:
    def test_crud(self, db: Database) -> None:
        agents = AgentStore(db)
        agents.create("team-a", "helper", {"system_prompt": "be nice", "tools": ["add"]})
        with pytest.raises(Conflict):
            agents.create("team-a", "helper", {})
        agents.create("team-b", "helper", {"system_prompt": "b"})  # same name, other namespace: fine
        assert agents.get("team-a", "helper").config["tools"] == ["add"]
        assert agents.update("team-a", "helper", {"system_prompt": "terse"}).config == {
            "system_prompt": "terse"
        }
        assert [a.name for a in agents.list("team-a")] == ["helper"]
        agents.delete("team-a", "helper")
        with pytest.raises(NotFound):
            agents.get("team-a", "helper")
        assert agents.get("team-b", "helper").config == {"system_prompt": "b"}

    def test_namespaces_are_isolated(self, db: Database) -> None:
        agents = AgentStore(db)
        agents.create("team-a", "private", {})
        assert agents.list("team-b") == []
        for attempt in (
            lambda: agents.get("team-b", "private"),
            lambda: agents.update("team-b", "private", {}),
            lambda: agents.delete("team-b", "private"),
        ):
            with pytest.raises(NotFound):
                attempt()


class TestRunStore:
    def test_run_with_steps_and_checkpoint(self, db: Database) -> None:
        runs = RunStore(db)
        run = runs.create("team-a", "helper", "add 2 and 3", session_id="ses_x")
        assert run.id.startswith("run_") and run.status == "running" and run.state is None
        runs.add_step(
            "team-a", run.id, "llm", {"role": "assistant", "content": "calling add"}, usage={"tokens": 7}
        )
        runs.add_step("team-a", run.id, "tool_result", {"result": 5})
        waiting = runs.update("team-a", run.id, status="waiting_human", state={"messages": [1, 2]})
        assert waiting.status == "waiting_human" and waiting.state == {"messages": [1, 2]}
        done = runs.update("team-a", run.id, status="succeeded", result="5", state=None)
        assert (done.status, done.result, done.state, done.error) == ("succeeded", "5", None, None)
        steps = runs.steps("team-a", run.id)
        assert [(s.index, s.kind) for s in steps] == [(0, "llm"), (1, "tool_result")]
        assert steps[0].usage == {"tokens": 7} and steps[1].content == {"result": 5}
        assert [s.index for s in runs.steps("team-a", run.id, after=0)] == [1]
        assert [r.id for r in runs.list("team-a", status="succeeded")] == [run.id]
        assert runs.list("team-a", status="failed") == []
        with pytest.raises(ValueError):
            runs.update("team-a", run.id, status="paused")  # type: ignore[arg-type]

    def test_namespaces_are_isolated(self, db: Database) -> None:
        runs = RunStore(db)
        run = runs.create("team-a", "helper", "private task")
        assert runs.list("team-b") == []
        for attempt in (
            lambda: runs.get("team-b", run.id),
            lambda: runs.update("team-b", run.id, status="failed"),
            lambda: runs.add_step("team-b", run.id, "llm", {}),
            lambda: runs.steps("team-b", run.id),
        ):
            with pytest.raises(NotFound):
                attempt()
        assert runs.get("team-a", run.id).status == "running"
        assert runs.steps("team-a", run.id) == []

    def test_concurrent_steps_are_numbered_without_gaps(self, db: Database) -> None:
        run = RunStore(db).create("team-a", "helper", "busy")
        _in_threads(8, lambda i: RunStore(db).add_step("team-a", run.id, "llm", {"i": i}))
        steps = RunStore(db).steps("team-a", run.id)
        assert [s.index for s in steps] == list(range(8))
        assert sorted(s.content["i"] for s in steps) == list(range(8))


class TestHumanRequestStore:
    def test_answer_once(self, db: Database) -> None:
        run = RunStore(db).create("team-a", "helper", "needs help")
        requests = HumanRequestStore(db)
        request = requests.create("team-a", "Which file?", run_id=run.id, context={"files": ["a", "b"]})
        assert request.id.startswith("hr_") and request.status == "pending"
        assert [r.id for r in requests.pending("team-a")] == [request.id]
        answered = requests.answer("team-a", request.id, "b")
        assert (answered.status, answered.answer) == ("answered", "b") and answered.answered_at is not None
        with pytest.raises(Conflict):
            requests.answer("team-a", request.id, "a")
        assert requests.get("team-a", request.id).answer == "b"
        assert requests.pending("team-a") == []
        assert [r.id for r in requests.list("team-a", status="answered")] == [request.id]

    def test_concurrent_answers_have_one_winner(self, db: Database) -> None:
        requests = HumanRequestStore(db)
        request = requests.create("team-a", "Yes or no?")

        def answer(i: int) -> str:
            try:
                requests.answer("team-a", request.id, f"answer {i}")
                return "won"
            except Conflict:
                return "conflict"

        assert sorted(_in_threads(8, answer)) == ["conflict"] * 7 + ["won"]

    def test_deadline(self, db: Database) -> None:
        requests = HumanRequestStore(db)
        late = requests.create("team-a", "Too late?", deadline=1000.0)
        other = requests.create("team-b", "Open-ended?")
        with pytest.raises(Conflict, match="expired"):
            requests.answer("team-a", late.id, "yes", now=1001.0)
        assert [r.id for r in requests.expire_overdue(now=1001.0)] == [late.id]
        assert requests.expire_overdue(now=1001.0) == []
        assert requests.get("team-a", late.id).status == "expired"
        assert requests.get("team-b", other.id).status == "pending"

    def test_namespaces_are_isolated(self, db: Database) -> None:
        requests = HumanRequestStore(db)
        request = requests.create("team-a", "Secret question?")
        assert requests.pending("team-b") == [] and requests.list("team-b") == []
        with pytest.raises(NotFound):
            requests.get("team-b", request.id)
        with pytest.raises(NotFound):
            requests.answer("team-b", request.id, "hijacked")
        assert requests.get("team-a", request.id).status == "pending"
        run = RunStore(db).create("team-a", "helper", "task")
        with pytest.raises(NotFound):
            requests.create("team-b", "Attach to a foreign run?", run_id=run.id)
        assert requests.list("team-b") == []


class TestTransactions:
    def test_a_failing_transaction_leaves_nothing_behind(self, db: Database) -> None:
        with pytest.raises(RuntimeError), db.session() as session:
            session.add(ApiKey(namespace="team-a", key_hash="h" * 64, prefix="p"))
            session.flush()
            raise RuntimeError("boom")
        assert KeyStore(db).list() == []
        run = RunStore(db).create("team-a", "helper", "task")
        with pytest.raises(NotFound):
            HumanRequestStore(db).create("team-b", "orphan?", run_id=run.id)
        with db.session() as session:
            assert session.exec(select(HumanRequest)).all() == []

    def test_unique_violation_is_a_conflict(self, db: Database) -> None:
        with pytest.raises(Conflict), db.session() as session:
            session.add(ApiKey(namespace="team-a", key_hash="same", prefix="p"))
            session.add(ApiKey(namespace="team-a", key_hash="same", prefix="p"))

    def test_concurrent_writes_from_8_threads_all_land(self, db: Database) -> None:
        def write(i: int) -> None:
            for j in range(20):
                AuditStore(db).record(f"ns-{i}", "add", "ok", duration_ms=j)
            SessionStore(db).create(f"ns-{i}", node_id="node-1")

        _in_threads(8, write)
        assert all(len(AuditStore(db).list(f"ns-{i}", limit=1000)) == 20 for i in range(8))
        assert len(SessionStore(db).list_all_live()) == 8

    def test_returned_rows_are_detached_and_picklable(self, db: Database) -> None:
        session_record = SessionStore(db).create("team-a", node_id="node-1", limits={"cpus": 1.0})
        assert inspect(session_record).detached
        fetched = SessionStore(db).get("team-a", session_record.id)
        assert inspect(fetched).detached and fetched.limits == {"cpus": 1.0}
        copy = pickle.loads(pickle.dumps(fetched))
        assert copy.model_dump() == fetched.model_dump()


# --- SQLite only ---------------------------------------------------------------------------------------


def test_sqlite_is_configured_for_concurrent_use(db: Database, tmp_path: Path) -> None:
    assert db.dialect == "sqlite"
    assert (tmp_path / "state" / "registry.db").exists()  # the parent directory was created
    with db.session(write=False) as session:
        pragmas = {
            name: session.connection().execute(text(f"PRAGMA {name}")).scalar()
            for name in ("journal_mode", "foreign_keys", "synchronous", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 1, "busy_timeout": 10000}


def test_a_locked_database_is_reported_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with Database(f"sqlite:///{path}", busy_timeout_s=0.1) as db:
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(RegistryUnavailable, match="locked") as error:
                KeyStore(db).create("team-a")
            assert error.value.status == 503
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        KeyStore(db).create("team-a")  # fine again once the lock is gone


def test_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOOLSERVER_DATABASE_URL", raising=False)
    with Database.from_env(tmp_path / "home") as db:
        assert db.url.database == str(tmp_path / "home" / "toolserver.db")
    monkeypatch.setenv("TOOLSERVER_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with Database.from_env(tmp_path / "home") as db:
        assert db.url.database == str(tmp_path / "elsewhere.db")


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="file"):
        Database("sqlite://")


def _raw_secrets(db: Database) -> dict[tuple[str, str], str]:
    with db.session(write=False) as session:
        return {(r.namespace, r.name): r.value for r in session.exec(select(Secret)).all()}


def _write_raw_secret(db: Database, namespace: str, name: str, value: str) -> None:
    with db.session() as session:
        row = session.get(Secret, (namespace, name))
        assert row is not None
        row.value = value
        session.add(row)
