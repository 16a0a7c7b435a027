"""The environment's hub, messages, agent registry and store: in process, on real SQLite files, no Ray."""

from __future__ import annotations

import asyncio
import pickle
from collections import defaultdict
from pathlib import Path

import pytest

from agent_core.environment import (
    AgentExists,
    AgentRegistry,
    Hub,
    InboxFull,
    InMemoryEnvironmentStore,
    InvalidTransition,
    Message,
    SqlEnvironmentStore,
    UnknownAgent,
)
from foundation.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from registry import Database, RegistryUnavailable


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def make_hub(*agents: tuple[str, str], store=None, **options) -> Hub:
    hub = Hub("team-a", "room", store, **options)
    for name, role in agents:
        await hub.register_agent(name, role)
    return hub


def sqlite(path: Path) -> Database:
    return Database(f"sqlite:///{path}")


class TestMessage:
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"sender": ""}, "sender"),
            ({"sender": "bad name"}, "sender"),
            ({"content": 42}, "content"),
            ({"recipients": "bob"}, "recipients"),
            ({"recipients": ["bob", "bob"]}, "recipients"),
            ({"recipients": ["ok", "no/slash"]}, "recipients[1]"),
            ({"topic": "has space"}, "topic"),
            ({"metadata": {"when": object()}}, "metadata"),
            ({"metadata": ["not", "a", "dict"]}, "metadata"),
            ({"seq": -1}, "seq"),
        ],
    )
    def test_bad_fields_name_the_field(self, fields: dict, field: str) -> None:
        values = {"sender": "alice", "content": "hi", **fields}
        with pytest.raises(ValidationFailed) as caught:
            Message(**values)
        assert caught.value.field == field

    def test_oversized_content_is_payload_too_large(self) -> None:
        with pytest.raises(PayloadTooLarge) as caught:
            Message("alice", "x" * 200_001)
        assert caught.value.details["field"] == "content"

    def test_json_round_trip_and_pickle(self) -> None:
        message = Message("alice", "hi", ("bob",), "ops", {"k": [1, 2]})
        assert Message.from_dict(message.to_dict()) == message
        assert pickle.loads(pickle.dumps(message)) == message
        with pytest.raises(ValidationFailed) as caught:
            Message.from_dict({"sender": "alice", "content": "hi", "colour": "red"})
        assert caught.value.field == "colour"
        with pytest.raises(ValidationFailed) as caught:
            Message.from_dict({"sender": "alice"})
        assert caught.value.field == "content"

    def test_errors_survive_pickling(self) -> None:
        for error in (InboxFull("bob", 3), InvalidTransition("bob", "failed", "running", ["idle"])):
            copy = pickle.loads(pickle.dumps(error))
            assert type(copy) is type(error) and copy.to_dict() == error.to_dict()
        assert pickle.loads(pickle.dumps(InboxFull("bob", 3))).agent == "bob"


class TestInboxes:
    async def test_reading_drains_the_inbox(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        for i in range(3):
            await hub.publish(Message("alice", f"m{i}", ("bob",)))
        assert await hub.pending() == {"bob": 3}
        assert [m.content for m in await hub.read("bob", max_count=2)] == ["m0", "m1"]
        assert [m.content for m in await hub.read("bob")] == ["m2"]
        assert await hub.read("bob") == []
        assert await hub.pending() == {}
        assert await hub.read("alice") == []  # nothing was addressed to the sender

    async def test_explicit_recipients_only(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"), ("carol", "ops"))
        await hub.subscribe("general", role="dev")
        sent = await hub.publish(Message("alice", "for carol", ("carol",)))
        assert sent.delivered_to == ("carol",) and sent.seq == 1 and sent.position == 1
        assert await hub.pending() == {"carol": 1}

    async def test_unknown_recipient_is_refused_and_nothing_is_stored(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        with pytest.raises(ValidationFailed) as caught:
            await hub.publish(Message("alice", "hi", ("bob", "nobody")))
        assert caught.value.field == "recipients[1]"
        assert await hub.history() == [] and await hub.pending() == {}

    async def test_subscriptions_by_agent_and_by_role(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"), ("carol", "ops"), ("dan", "qa"))
        await hub.subscribe("deploys", role="ops")
        await hub.subscribe("deploys", agent="dan")
        await hub.register_agent("erin", "ops")  # joins the role after it subscribed
        sent = await hub.publish(Message("alice", "v2 is out", topic="deploys"))
        assert sent.delivered_to == ("carol", "dan", "erin")
        await hub.unsubscribe("deploys", agent="dan")
        await hub.unsubscribe("deploys", role="ops")
        assert (await hub.publish(Message("alice", "v3", topic="deploys"))).delivered_to == ()
        assert (await hub.read("erin"))[0].content == "v2 is out"

    async def test_sender_does_not_get_its_own_topic_message_unless_addressed(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        await hub.subscribe("general", role="dev")
        assert (await hub.publish(Message("alice", "to all"))).delivered_to == ("bob",)
        assert (await hub.publish(Message("alice", "note to self", ("alice",)))).delivered_to == ("alice",)
        assert [m.content for m in await hub.read("alice")] == ["note to self"]

    async def test_subscribe_needs_exactly_one_target_and_a_known_agent(self) -> None:
        hub = await make_hub(("alice", "dev"))
        with pytest.raises(ValidationFailed):
            await hub.subscribe("general")
        with pytest.raises(ValidationFailed):
            await hub.subscribe("general", agent="alice", role="dev")
        with pytest.raises(UnknownAgent):
            await hub.subscribe("general", agent="nobody")
        with pytest.raises(ValidationFailed) as caught:
            await hub.subscribe("bad topic", role="dev")
        assert caught.value.field == "topic"

    async def test_a_message_is_published_once(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        draft = Message("alice", "once", ("bob",))
        sent = await hub.publish(draft)
        for again in (draft, sent):
            with pytest.raises(ValidationFailed) as caught:
                await hub.publish(again)
            assert caught.value.field == "id"
        assert len(await hub.read("bob")) == 1

    async def test_a_full_inbox_refuses_the_whole_message(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"), ("carol", "dev"), inbox_limit=3)
        for i in range(3):
            await hub.publish(Message("alice", f"m{i}", ("bob",)))
        with pytest.raises(InboxFull) as caught:
            await hub.publish(Message("alice", "one too many", ("carol", "bob")))
        assert caught.value.agent == "bob" and caught.value.limit == 3 and caught.value.status == 429
        assert await hub.pending() == {"bob": 3}  # carol did not get it either
        assert len(await hub.history()) == 3
        await hub.read("bob", max_count=1)
        sent = await hub.publish(Message("alice", "now it fits", ("carol", "bob")))
        assert sent.seq == 4  # the refused message used no sequence number

    async def test_a_message_the_store_refuses_fails_alone(self) -> None:
        class PoisonStore(InMemoryEnvironmentStore):
            def append(self, namespace: str, environment: str, messages) -> None:
                if any(m.content == "poison" for m in messages):
                    raise RegistryUnavailable("the disk is on fire")
                super().append(namespace, environment, messages)

        hub = await make_hub(("alice", "dev"), ("bob", "dev"), store=PoisonStore())
        results = await asyncio.gather(
            *(hub.publish(Message("alice", text, ("bob",))) for text in ("a", "poison", "b")),
            return_exceptions=True,
        )
        assert isinstance(results[1], RegistryUnavailable)
        assert [(m.content, m.seq, m.position) for m in results if isinstance(m, Message)] == [
            ("a", 1, 1),
            ("b", 2, 2),
        ]
        assert [m.content for m in await hub.read("bob")] == ["a", "b"]
        assert [m.content for m in await hub.history()] == ["a", "b"]

    async def test_requeue_puts_messages_back_in_front(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        for i in range(3):
            await hub.publish(Message("alice", f"m{i}", ("bob",)))
        taken = await hub.read("bob", max_count=2)
        await hub.requeue("bob", taken)
        assert [m.content for m in await hub.read("bob")] == ["m0", "m1", "m2"]

    async def test_unregister_returns_the_unread_messages(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "dev"))
        await hub.subscribe("general", agent="bob")
        await hub.publish(Message("alice", "left behind"))
        left = await hub.unregister_agent("bob")
        assert [m.content for m in left] == ["left behind"]
        assert (await hub.publish(Message("alice", "to nobody"))).delivered_to == ()
        with pytest.raises(UnknownAgent):
            await hub.read("bob")

    async def test_describe(self) -> None:
        hub = await make_hub(("alice", "dev"), ("bob", "ops"))
        await hub.subscribe("general", role="ops")
        await hub.publish(Message("alice", "hi"))
        summary = await hub.describe()
        assert summary["subscriptions"] == {"general": {"agents": [], "roles": ["ops"]}}
        assert summary["pending"] == {"bob": 1} and summary["messages"] == 1
        assert [a["name"] for a in summary["agents"]] == ["alice", "bob"]


class TestHistory:
    async def test_history_is_stored_in_sqlite_and_paged(self, tmp_path: Path) -> None:
        path = tmp_path / "registry.db"
        with sqlite(path) as db:
            hub = await make_hub(("alice", "dev"), ("bob", "dev"), store=SqlEnvironmentStore(db))
            for i in range(25):
                await hub.publish(Message("alice", f"m{i}", ("bob",), metadata={"i": i}))
            await hub.publish(Message("bob", "other topic", ("alice",), topic="ops"))
            await hub.close()
        with sqlite(path) as db:  # a new process would see the same
            store = SqlEnvironmentStore(db)
            hub = Hub("team-a", "room", store)
            pages, after = [], 0
            while page := await hub.history(after=after, limit=10):
                pages.append(page)
                after = page[-1].position
            assert [len(p) for p in pages] == [10, 10, 6]
            messages = [m for p in pages for m in p]
            assert [m.position for m in messages] == list(range(1, 27))
            assert messages[3].content == "m3" and messages[3].metadata == {"i": 3}
            assert messages[3].recipients == ("bob",) and messages[3].delivered_to == ("bob",)
            assert [m.content for m in await hub.history(topic="ops")] == ["other topic"]
            assert store.history("team-b", "room") == []  # another namespace sees nothing
            # A restarted hub continues the numbering and knows its agents (with empty inboxes).
            assert [a.name for a in await hub.agents()] == ["alice", "bob"]
            sent = await hub.publish(Message("alice", "after restart", ("bob",)))
            assert (sent.seq, sent.position) == (26, 27)

    async def test_create_tables_is_idempotent(self, tmp_path: Path) -> None:
        with sqlite(tmp_path / "r.db") as db:
            SqlEnvironmentStore(db)
            SqlEnvironmentStore(db)

    async def test_history_arguments_are_checked(self) -> None:
        hub = await make_hub()
        for kwargs, field in (({"limit": 0}, "limit"), ({"after": -1}, "after"), ({"topic": "a b"}, "topic")):
            with pytest.raises(ValidationFailed) as caught:
                await hub.history(**kwargs)
            assert caught.value.field == field

    async def test_concurrent_publishers_lose_and_duplicate_nothing(self, tmp_path: Path) -> None:
        publishers, each = 16, 200
        with sqlite(tmp_path / "busy.db") as db:
            hub = Hub("team-a", "busy", SqlEnvironmentStore(db), inbox_limit=10_000)
            for p in range(publishers):
                await hub.register_agent(f"pub{p}", "publisher")
            for name, role in (("sub0", "reader"), ("sub1", "reader"), ("sub2", "auditor")):
                await hub.register_agent(name, role)
            await hub.subscribe("load", role="reader")
            await hub.subscribe("load", agent="sub2")
            received: dict[str, list[Message]] = defaultdict(list)
            done = asyncio.Event()

            async def publish(p: int) -> None:
                for i in range(each):
                    await hub.publish(Message(f"pub{p}", str(i), topic="load"))

            async def drain(name: str) -> None:  # reads while the publishers write
                while not done.is_set() or (await hub.pending()).get(name):
                    received[name] += await hub.read(name, max_count=37)
                    await asyncio.sleep(0)

            readers = [asyncio.create_task(drain(f"sub{i}")) for i in range(3)]
            await asyncio.gather(*(publish(p) for p in range(publishers)))
            done.set()
            await asyncio.gather(*readers)
            history = []
            while page := await hub.history(after=history[-1].position if history else 0, limit=1000):
                history += page

        total = publishers * each
        assert [m.position for m in history] == list(range(1, total + 1))
        for name in ("sub0", "sub1", "sub2"):
            got = received[name]
            assert len(got) == total and len({m.id for m in got}) == total, name
            by_sender: dict[str, list[Message]] = defaultdict(list)
            for m in got:
                by_sender[m.sender].append(m)
            for sender, messages in by_sender.items():
                assert [m.seq for m in messages] == list(range(1, each + 1)), (name, sender)
                assert [m.content for m in messages] == [str(i) for i in range(each)], (name, sender)
            assert [m.position for m in got] == sorted(m.position for m in got)  # one global order


class TestAgentRegistry:
    def test_heartbeats_and_dead_detection(self) -> None:
        clock = Clock()
        registry = AgentRegistry("room", clock=clock)
        registry.register("alice", "dev", node_id="node-a")
        registry.register("bob", "dev", node_id="node-a")
        registry.register("local", "dev")  # no node: sends no heartbeats, never reported dead
        clock.now += 5
        registry.heartbeat("bob", node_id="node-b")
        clock.now += 5
        assert [a.name for a in registry.dead(timeout_s=8)] == ["alice"]
        assert [a.name for a in registry.dead(timeout_s=3)] == ["alice", "bob"]
        assert registry.dead(timeout_s=20) == []
        assert registry.get("bob").node_id == "node-b"
        with pytest.raises(ValidationFailed):
            registry.dead(timeout_s=0)

    def test_status_transitions_are_checked(self) -> None:
        registry = AgentRegistry("room", clock=Clock())
        registry.register("alice", "dev")
        for status in ("running", "waiting_human", "running", "idle", "running", "failed"):
            assert registry.set_status("alice", status).status == status
        assert registry.get("alice").error is None
        with pytest.raises(InvalidTransition) as caught:
            registry.set_status("alice", "running")
        assert isinstance(caught.value, Conflict)
        assert "idle" in caught.value.message
        with pytest.raises(ValidationFailed) as bad:
            registry.set_status("alice", "sleeping")
        assert bad.value.field == "status"
        assert registry.set_status("alice", "failed", "boom").error == "boom"
        assert registry.set_status("alice", "idle").error is None

    def test_names_duplicates_and_unknown_agents(self) -> None:
        registry = AgentRegistry("room", clock=Clock())
        registry.register("alice", "dev")
        with pytest.raises(AgentExists):
            registry.register("alice", "ops")
        with pytest.raises(ValidationFailed) as caught:
            registry.register("bob", "bad role")
        assert caught.value.field == "role"
        with pytest.raises(NotFound):
            registry.heartbeat("nobody")

    def test_relocation_makes_a_new_incarnation_and_old_beats_are_ignored(self) -> None:
        clock = Clock()
        registry = AgentRegistry("room", clock=clock)
        registry.register("alice", "dev", node_id="n1")
        registry.set_status("alice", "running")
        registry.set_status("alice", "failed", "node lost")
        clock.now += 10
        moved = registry.relocate("alice", "n2")
        assert (moved.node_id, moved.status, moved.incarnation, moved.last_heartbeat) == (
            "n2",
            "idle",
            1,
            1010,
        )
        clock.now += 1
        assert registry.heartbeat("alice", "n1", incarnation=0).node_id == "n2"
        assert registry.get("alice").last_heartbeat == 1010
        assert registry.heartbeat("alice", "n2", incarnation=1).last_heartbeat == 1011

    async def test_hub_persists_agents_but_not_every_heartbeat(self, tmp_path: Path) -> None:
        clock = Clock()
        store = InMemoryEnvironmentStore()
        hub = Hub("team-a", "room", store, clock=clock)
        await hub.register_agent("alice", "dev", node_id="n1", config={"kind": "echo"})
        await hub.set_status("alice", "running")
        clock.now += 30
        await hub.heartbeat("alice", "n1")
        [stored] = store.agents("team-a", "room")
        assert (stored.status, stored.node_id, stored.config, stored.last_heartbeat) == (
            "running",
            "n1",
            {"kind": "echo"},
            1000,
        )
        await hub.heartbeat("alice", "n2")  # a move is stored
        assert store.agents("team-a", "room")[0].node_id == "n2"
        clock.now += 30
        assert [a.name for a in await hub.dead(10)] == ["alice"]
