"""Versioned tool definitions: a namespace's own tools plus the shared (builtin) ones."""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from foundation.errors import Conflict
from registry._store import not_found, retry_write_conflicts
from registry.db import Database
from registry.models import SHARED_NAMESPACE, Tool

__all__ = ["ToolStore"]


class ToolStore:
    """Registering an existing name adds a version; deleting hides every version; get sees the latest live one."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def register(
        self,
        namespace: str,
        name: str,
        *,
        kind: str,
        description: str = "",
        parameters: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Tool:
        """Store a new version of `name` (1 for a new name, else one past the highest ever used)."""

        def write() -> Tool:
            with self._db.session() as session:
                if namespace != SHARED_NAMESPACE and _latest(session, SHARED_NAMESPACE, name) is not None:
                    raise Conflict(f"tool name {name!r} is taken by a shared tool", field="name")
                highest = session.exec(
                    select(func.max(Tool.version)).where(Tool.namespace == namespace, Tool.name == name)
                ).one()
                tool = Tool(
                    namespace=namespace,
                    name=name,
                    version=(highest or 0) + 1,
                    kind=kind,
                    description=description,
                    parameters=parameters or {},
                    config=config or {},
                )
                session.add(tool)
                session.flush()
                return tool

        return retry_write_conflicts(write)

    def get(self, namespace: str, name: str, *, include_shared: bool = True) -> Tool:
        """The latest live version: the namespace's own tool, else a shared one."""
        with self._db.session(write=False) as session:
            tool = _latest(session, namespace, name)
            if tool is None and include_shared and namespace != SHARED_NAMESPACE:
                tool = _latest(session, SHARED_NAMESPACE, name)
        if tool is None:
            raise not_found("tool", name)
        return tool

    def list(self, namespace: str, *, include_shared: bool = True) -> builtins.list[Tool]:
        """The latest live version of every tool visible to `namespace`, by name; own tools shadow shared ones."""
        namespaces = [namespace]
        if include_shared and namespace != SHARED_NAMESPACE:
            namespaces.append(SHARED_NAMESPACE)
        latest = (
            select(Tool.namespace, Tool.name, func.max(Tool.version).label("version"))
            .where(col(Tool.namespace).in_(namespaces), col(Tool.deleted).is_(False))
            .group_by(col(Tool.namespace), col(Tool.name))
            .subquery()
        )
        query = select(Tool).join(
            latest,
            (col(Tool.namespace) == latest.c.namespace)
            & (col(Tool.name) == latest.c.name)
            & (col(Tool.version) == latest.c.version),
        )
        with self._db.session(write=False) as session:
            rows = session.exec(query).all()
        visible: dict[str, Tool] = {}
        for tool in rows:
            if tool.name not in visible or tool.namespace == namespace:
                visible[tool.name] = tool
        return [visible[name] for name in sorted(visible)]

    def versions(self, namespace: str, name: str) -> builtins.list[Tool]:
        """Every version of the namespace's tool `name`, oldest first, deleted ones included."""
        with self._db.session(write=False) as session:
            tools = session.exec(
                select(Tool).where(Tool.namespace == namespace, Tool.name == name).order_by(col(Tool.version))
            ).all()
        if not tools:
            raise not_found("tool", name)
        return builtins.list(tools)

    def delete(self, namespace: str, name: str) -> None:
        """Mark every version deleted; registering the name again starts a new version."""
        with self._db.session() as session:
            result = session.exec(
                update(Tool)
                .where(col(Tool.namespace) == namespace, col(Tool.name) == name, col(Tool.deleted).is_(False))
                .values(deleted=True)
            )
            if result.rowcount == 0:
                raise not_found("tool", name)


def _latest(session: Session, namespace: str, name: str) -> Tool | None:
    return session.exec(
        select(Tool)
        .where(Tool.namespace == namespace, Tool.name == name, col(Tool.deleted).is_(False))
        .order_by(col(Tool.version).desc())
        .limit(1)
    ).first()
