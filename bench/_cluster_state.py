"""What the node-loss benchmark reads of its cluster: where the server's actors run, alive nodes, containers."""

from __future__ import annotations

__all__ = ["actor_nodes", "alive", "node_containers"]


def actor_nodes() -> dict[str, set[str]]:
    """Node ids of the server's singletons and ingress replicas, by role (Ray's actor table)."""
    from ray._private import state

    roles: dict[str, set[str]] = {}
    for actor in state.actors().values():
        if actor["State"] != "ALIVE":
            continue
        name, cls = actor.get("Name") or "", actor.get("ActorClassName") or ""
        role = "ingress" if "ingress" in cls and "Replica" in cls else name
        if role in ("run-scheduler", "environment-center", "memory", "ingress"):
            roles.setdefault(role, set()).add(actor["Address"]["NodeID"])
    return roles


def alive() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def node_containers(instance_id: str, node_id: str | None = None) -> int:
    import docker

    from sandbox import _labels

    found = docker.from_env().containers.list(all=True, filters=_labels.instance_filter(instance_id))
    return sum(1 for c in found if node_id is None or c.labels.get(_labels.NODE) == node_id)
