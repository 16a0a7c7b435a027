"""Where an environment's history and agents persist: tables in the registry database, or memory (tests).

The hub appends every accepted message in one transaction per batch and pages the history back by
position; agents (role, node, status, config) are upserted on every change except heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import func
from sqlmodel import col, delete, select

from agent_core.environment.messages import Message
from agent_core.environment.registry import AgentInfo
from registry import Database, ensure_schema
from registry.models import ENV_TABLES, EnvAgentRecord, EnvMessageRecord

__all__ = [
    "ENV_TABLES",
    "EnvAgentRecord",
    "EnvMessageRecord",
    "EnvironmentStore",
    "InMemoryEnvironmentStore",
    "SqlEnvironmentStore",
    "ensure_tables",
]


def ensure_tables(db: Database) -> None:
    """Bring the registry's schema, which holds `env_messages` and `env_agents`, up to date.

    `Database(url)` already does; this is for a handle opened with `ensure_schema=False`.
    """
    ensure_schema(db)


class EnvironmentStore(Protocol):
    """Synchronous persistence; the hub calls it from a worker thread."""

    def append(self, namespace: str, environment: str, messages: Sequence[Message]) -> None:
        """Store accepted messages, in order."""
        ...

    def history(
        self, namespace: str, environment: str, *, after: int = 0, limit: int = 100, topic: str | None = None
    ) -> list[Message]:
        """Stored messages after position `after` (on `topic` if given), oldest first."""
        ...

    def counters(self, namespace: str, environment: str) -> tuple[int, dict[str, int]]:
        """The last position and each sender's last sequence number."""
        ...

    def save_agent(self, namespace: str, environment: str, info: AgentInfo) -> None:
        """Store (insert or replace) an agent's record."""
        ...

    def delete_agent(self, namespace: str, environment: str, name: str) -> None:
        """Forget one agent's record; one that is not there is no error."""
        ...

    def delete_agents(self, namespace: str, environment: str) -> None:
        """Forget every agent of an environment (it was removed); its messages stay."""
        ...

    def agents(self, namespace: str, environment: str) -> list[AgentInfo]:
        """The stored agents of an environment."""
        ...


class SqlEnvironmentStore:
    """The store in the registry database (SQLite file or PostgreSQL), whose schema holds its tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, namespace: str, environment: str, messages: Sequence[Message]) -> None:
        """Store accepted messages, in order, in one transaction."""
        with self.db.session() as session:
            session.add_all(_message_record(namespace, environment, m) for m in messages)

    def history(
        self, namespace: str, environment: str, *, after: int = 0, limit: int = 100, topic: str | None = None
    ) -> list[Message]:
        """Stored messages after position `after` (on `topic` if given), oldest first."""
        query = (
            select(EnvMessageRecord)
            .where(EnvMessageRecord.namespace == namespace, EnvMessageRecord.environment == environment)
            .where(col(EnvMessageRecord.position) > after)
        )
        if topic is not None:
            query = query.where(EnvMessageRecord.topic == topic)
        query = query.order_by(col(EnvMessageRecord.position)).limit(limit)
        with self.db.session(write=False) as session:
            return [_message(r) for r in session.exec(query)]

    def counters(self, namespace: str, environment: str) -> tuple[int, dict[str, int]]:
        """(the last message position, each sender's last sequence number): where a restarted hub resumes."""
        where = (EnvMessageRecord.namespace == namespace, EnvMessageRecord.environment == environment)
        with self.db.session(write=False) as session:
            last = session.exec(select(func.max(EnvMessageRecord.position)).where(*where)).one()
            rows = session.exec(
                select(EnvMessageRecord.sender, func.max(EnvMessageRecord.seq))
                .where(*where)
                .group_by(EnvMessageRecord.sender)
            ).all()
        return int(last or 0), {sender: int(seq) for sender, seq in rows}

    def save_agent(self, namespace: str, environment: str, info: AgentInfo) -> None:
        """Store (insert or replace) an agent's record."""
        record = EnvAgentRecord(
            namespace=namespace,
            environment=environment,
            name=info.name,
            role=info.role,
            status=info.status,
            node_id=info.node_id,
            config=info.config,
            error=info.error,
            incarnation=info.incarnation,
            last_heartbeat=info.last_heartbeat,
            created_at=info.created_at,
            updated_at=time.time(),
        )
        with self.db.session() as session:
            session.merge(record)

    def delete_agent(self, namespace: str, environment: str, name: str) -> None:
        """Forget one agent's record; one that is not there is no error."""
        with self.db.session() as session:
            record = session.get(EnvAgentRecord, (namespace, environment, name))
            if record is not None:
                session.delete(record)

    def delete_agents(self, namespace: str, environment: str) -> None:
        """Forget every agent of an environment; its messages stay."""
        query = delete(EnvAgentRecord).where(
            col(EnvAgentRecord.namespace) == namespace, col(EnvAgentRecord.environment) == environment
        )
        with self.db.session() as session:
            session.exec(query)

    def agents(self, namespace: str, environment: str) -> list[AgentInfo]:
        """The stored agents of an environment, in registration order."""
        query = (
            select(EnvAgentRecord)
            .where(EnvAgentRecord.namespace == namespace, EnvAgentRecord.environment == environment)
            .order_by(col(EnvAgentRecord.created_at), col(EnvAgentRecord.name))
        )
        with self.db.session(write=False) as session:
            return [_agent(r) for r in session.exec(query)]


class InMemoryEnvironmentStore:
    """The same contract in process memory: for unit tests and throwaway environments."""

    def __init__(self) -> None:
        self._messages: dict[tuple[str, str], list[Message]] = {}
        self._agents: dict[tuple[str, str], dict[str, AgentInfo]] = {}

    def append(self, namespace: str, environment: str, messages: Sequence[Message]) -> None:
        """Keep accepted messages, in order."""
        self._messages.setdefault((namespace, environment), []).extend(messages)

    def history(
        self, namespace: str, environment: str, *, after: int = 0, limit: int = 100, topic: str | None = None
    ) -> list[Message]:
        """Kept messages after position `after` (on `topic` if given), oldest first."""
        found = [
            m
            for m in self._messages.get((namespace, environment), [])
            if m.position > after and (topic is None or m.topic == topic)
        ]
        return found[:limit]

    def counters(self, namespace: str, environment: str) -> tuple[int, dict[str, int]]:
        """(the last message position, each sender's last sequence number)."""
        messages = self._messages.get((namespace, environment), [])
        seqs: dict[str, int] = {}
        for m in messages:
            seqs[m.sender] = max(seqs.get(m.sender, 0), m.seq)
        return (messages[-1].position if messages else 0), seqs

    def save_agent(self, namespace: str, environment: str, info: AgentInfo) -> None:
        """Keep (insert or replace) an agent's record."""
        self._agents.setdefault((namespace, environment), {})[info.name] = info

    def delete_agent(self, namespace: str, environment: str, name: str) -> None:
        """Forget one agent's record."""
        self._agents.get((namespace, environment), {}).pop(name, None)

    def delete_agents(self, namespace: str, environment: str) -> None:
        """Forget every agent of an environment; its messages stay."""
        self._agents.pop((namespace, environment), None)

    def agents(self, namespace: str, environment: str) -> list[AgentInfo]:
        """The kept agents of an environment."""
        return list(self._agents.get((namespace, environment), {}).values())


def _message_record(namespace: str, environment: str, m: Message) -> EnvMessageRecord:
    return EnvMessageRecord(
        namespace=namespace,
        environment=environment,
        position=m.position,
        id=m.id,
        sender=m.sender,
        seq=m.seq,
        topic=m.topic,
        recipients=list(m.recipients),
        delivered_to=list(m.delivered_to),
        content=m.content,
        meta=m.metadata,
        created_at=m.created_at,
    )


def _message(r: EnvMessageRecord) -> Message:
    return Message(
        r.sender,
        r.content,
        recipients=tuple(r.recipients),
        topic=r.topic,
        metadata=dict(r.meta),
        id=r.id,
        created_at=r.created_at,
        seq=r.seq,
        position=r.position,
        delivered_to=tuple(r.delivered_to),
    )


def _agent(r: EnvAgentRecord) -> AgentInfo:
    return AgentInfo(
        r.name,
        r.role,
        status=r.status,  # type: ignore[arg-type]
        node_id=r.node_id,
        config=dict(r.config),
        last_heartbeat=r.last_heartbeat,
        created_at=r.created_at,
        error=r.error,
        incarnation=r.incarnation,
    )
