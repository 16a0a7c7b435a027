"""Which vanished nodes' containers a starting node manager removes from its Docker engine.

A machine that comes back (same Docker engine) joins Ray with a new node id, and its engine still holds
the containers of the node it was. Whatever starts its manager (`toolserver up`, its scan for nodes that
joined, the `serve deploy` node watcher), the manager takes those containers over at its start, so they
go: `orphaned_nodes` names the nodes to adopt. A node whose sessions the registry still holds as live is
left alone: the server re-attaches (or marks lost) those sessions itself, and another manager on the same
engine may be re-attaching them right now.
"""

from __future__ import annotations

import builtins
from typing import Any

from registry import Database, SessionStore
from sandbox import _labels

__all__ = ["engine_node_labels", "orphaned_nodes"]


def engine_node_labels(client: Any, instance_id: str) -> set[str]:
    """Node ids on the labels of this server instance's containers on the engine behind `client`."""
    containers = client.containers.list(all=True, filters=_labels.instance_filter(instance_id))
    return {c.labels.get(_labels.NODE, "") for c in containers} - {""}


def orphaned_nodes(client: Any, instance_id: str, database: str, alive: builtins.set[str]) -> set[str]:
    """Nodes not alive whose containers are on this engine and of which the registry holds no live session."""
    vanished = engine_node_labels(client, instance_id) - alive
    if not vanished:
        return set()
    db = Database(database)
    try:
        store = SessionStore(db)
        return {node_id for node_id in vanished if not store.list_all_live(node_id)}
    finally:
        db.close()
