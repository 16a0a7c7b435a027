"""Agent definitions, their runs and steps, and the questions runs ask humans."""

from __future__ import annotations

import builtins
import time
from typing import Any, Literal, get_args

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from foundation.errors import Conflict
from registry._store import UNSET, Unset, not_found, retry_write_conflicts
from registry.db import Database
from registry.errors import WriteConflict
from registry.models import AgentRecord, HumanRequest, RunRecord, StepRecord

__all__ = ["AgentStore", "HumanRequestStatus", "HumanRequestStore", "RunStatus", "RunStore"]

RunStatus = Literal["running", "waiting_human", "succeeded", "failed"]
HumanRequestStatus = Literal["pending", "answered", "expired"]


class AgentStore:
    """Agent definitions, unique by name within a namespace."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, namespace: str, name: str, config: dict[str, Any]) -> AgentRecord:
        """Define an agent; a name the namespace already uses is a Conflict."""
        agent = AgentRecord(namespace=namespace, name=name, config=config)
        try:
            with self._db.session() as session:
                session.add(agent)
        except WriteConflict as exc:
            raise Conflict(f"agent {name!r} already exists", field="name") from exc
        return agent

    def get(self, namespace: str, name: str) -> AgentRecord:
        """The agent of that name in the namespace."""
        with self._db.session(write=False) as session:
            agent = session.get(AgentRecord, (namespace, name))
        if agent is None:
            raise not_found("agent", name)
        return agent

    def list(self, namespace: str) -> builtins.list[AgentRecord]:
        """The namespace's agents, by name."""
        query = select(AgentRecord).where(AgentRecord.namespace == namespace).order_by(col(AgentRecord.name))
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def update(self, namespace: str, name: str, config: dict[str, Any]) -> AgentRecord:
        """Replace the agent's config."""
        with self._db.session() as session:
            agent = session.get(AgentRecord, (namespace, name))
            if agent is None:
                raise not_found("agent", name)
            agent.config = config
            agent.updated_at = time.time()
            session.add(agent)
        return agent

    def delete(self, namespace: str, name: str) -> None:
        """Forget the agent's definition."""
        with self._db.session() as session:
            agent = session.get(AgentRecord, (namespace, name))
            if agent is None:
                raise not_found("agent", name)
            session.delete(agent)


class RunStore:
    """Runs and their numbered steps; `state` is the checkpoint a run waiting for a human resumes from."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, namespace: str, agent: str, task: str, *, session_id: str | None = None) -> RunRecord:
        """A new run of `agent` on `task`, status running."""
        run = RunRecord(namespace=namespace, agent=agent, task=task, session_id=session_id)
        with self._db.session() as session:
            session.add(run)
        return run

    def get(self, namespace: str, run_id: str) -> RunRecord:
        """The run with that id in the namespace."""
        with self._db.session(write=False) as session:
            return _owned_run(session, namespace, run_id)

    def list(
        self, namespace: str, *, status: RunStatus | None = None, limit: int = 100
    ) -> builtins.list[RunRecord]:
        """The namespace's runs, newest first."""
        query = select(RunRecord).where(RunRecord.namespace == namespace)
        if status is not None:
            query = query.where(RunRecord.status == status)
        query = query.order_by(col(RunRecord.created_at).desc(), col(RunRecord.id).desc()).limit(limit)
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def update(
        self,
        namespace: str,
        run_id: str,
        *,
        status: RunStatus | None = None,
        state: dict[str, Any] | Unset | None = UNSET,
        result: Any = UNSET,
        error: str | Unset | None = UNSET,
    ) -> RunRecord:
        """Change the given fields only (None is a value to store for state, result and error)."""
        if status is not None and status not in get_args(RunStatus):
            raise ValueError(f"unknown run status {status!r}")
        with self._db.session() as session:
            run = _owned_run(session, namespace, run_id)
            if status is not None:
                run.status = status
            if not isinstance(state, Unset):
                run.state = state
            if not isinstance(result, Unset):
                run.result = result
            if not isinstance(error, Unset):
                run.error = error
            run.updated_at = time.time()
            session.add(run)
        return run

    def add_step(
        self, namespace: str, run_id: str, kind: str, content: Any, *, usage: dict[str, Any] | None = None
    ) -> StepRecord:
        """Append a step; its index is one past the run's last step."""

        def write() -> StepRecord:
            with self._db.session() as session:
                run = _owned_run(session, namespace, run_id)
                last = session.exec(
                    select(func.max(StepRecord.index)).where(StepRecord.run_id == run_id)
                ).one()
                index = 0 if last is None else last + 1
                step = StepRecord(run_id=run_id, index=index, kind=kind, content=content, usage=usage)
                run.updated_at = step.created_at
                session.add(step)
                session.add(run)
                session.flush()
                return step

        return retry_write_conflicts(write)

    def steps(self, namespace: str, run_id: str, *, after: int = -1) -> builtins.list[StepRecord]:
        """The run's steps with an index above `after`, in order (pass the last index seen to stream)."""
        with self._db.session(write=False) as session:
            _owned_run(session, namespace, run_id)
            query = (
                select(StepRecord)
                .where(StepRecord.run_id == run_id, col(StepRecord.index) > after)
                .order_by(col(StepRecord.index))
            )
            return builtins.list(session.exec(query).all())


class HumanRequestStore:
    """Questions to a human; each is answered at most once."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        namespace: str,
        question: str,
        *,
        run_id: str | None = None,
        context: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> HumanRequest:
        """Open a request; `run_id`, when given, must be a run of the same namespace."""
        request = HumanRequest(
            namespace=namespace, question=question, run_id=run_id, context=context or {}, deadline=deadline
        )
        with self._db.session() as session:
            if run_id is not None:
                _owned_run(session, namespace, run_id)
            session.add(request)
        return request

    def get(self, namespace: str, request_id: str) -> HumanRequest:
        """The request with that id in the namespace."""
        with self._db.session(write=False) as session:
            return _owned_request(session, namespace, request_id)

    def list(
        self, namespace: str, *, status: HumanRequestStatus | None = None, limit: int = 100
    ) -> builtins.list[HumanRequest]:
        """The namespace's requests, oldest first."""
        query = select(HumanRequest).where(HumanRequest.namespace == namespace)
        if status is not None:
            query = query.where(HumanRequest.status == status)
        query = query.order_by(col(HumanRequest.created_at), col(HumanRequest.id)).limit(limit)
        with self._db.session(write=False) as session:
            return builtins.list(session.exec(query).all())

    def pending(self, namespace: str) -> builtins.list[HumanRequest]:
        """The namespace's unanswered requests, oldest first."""
        return self.list(namespace, status="pending")

    def answer(
        self, namespace: str, request_id: str, answer: str, *, now: float | None = None
    ) -> HumanRequest:
        """Answer a pending request; Conflict if it was answered already or is past its deadline."""
        now = time.time() if now is None else now
        with self._db.session() as session:
            request = _owned_request(session, namespace, request_id)
            if request.status != "pending":
                raise Conflict(f"human request {request_id!r} is already {request.status}")
            if request.deadline is not None and request.deadline <= now:
                raise Conflict(f"human request {request_id!r} expired")
            # The status condition makes this the one winning answer even if another transaction read
            # "pending" concurrently (PostgreSQL re-checks it after the other commits).
            result = session.exec(
                update(HumanRequest)
                .where(col(HumanRequest.id) == request_id, col(HumanRequest.status) == "pending")
                .values(status="answered", answer=answer, answered_at=now)
            )
            if result.rowcount != 1:
                raise Conflict(f"human request {request_id!r} is already answered")
            session.refresh(request)
        return request

    def expire_overdue(self, now: float | None = None) -> builtins.list[HumanRequest]:
        """Mark pending requests (of every namespace) past their deadline expired and return them."""
        now = time.time() if now is None else now
        with self._db.session() as session:
            overdue = session.exec(
                select(HumanRequest).where(
                    HumanRequest.status == "pending",
                    col(HumanRequest.deadline).is_not(None),
                    col(HumanRequest.deadline) <= now,
                )
            ).all()
            expired = []
            for request in overdue:
                # Conditional, so that an answer committed since the select above is never overwritten.
                result = session.exec(
                    update(HumanRequest)
                    .where(col(HumanRequest.id) == request.id, col(HumanRequest.status) == "pending")
                    .values(status="expired")
                )
                if result.rowcount == 1:
                    session.refresh(request)
                    expired.append(request)
        return expired


def _owned_run(session: Session, namespace: str, run_id: str) -> RunRecord:
    run = session.get(RunRecord, run_id)
    if run is None or run.namespace != namespace:
        raise not_found("run", run_id)
    return run


def _owned_request(session: Session, namespace: str, request_id: str) -> HumanRequest:
    request = session.get(HumanRequest, request_id)
    if request is None or request.namespace != namespace:
        raise not_found("human request", request_id)
    return request
