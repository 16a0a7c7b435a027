"""Container labels: how the server recognises, and reconciles, the sandboxes it owns.

Docker labels are immutable, so a pre-started pool container is labelled with the session id it
will get and `pool=true`; the owning namespace of a pooled sandbox is written at hand-out time to
its private directory (`owner`) and to the registry.
"""

from __future__ import annotations

MANAGED = "toolserver.managed"
INSTANCE = "toolserver.instance"
SESSION = "toolserver.session"
OWNER = "toolserver.owner"
NODE = "toolserver.node"
POOL = "toolserver.pool"


def labels_for(*, instance: str, session_id: str, owner: str, node: str, pooled: bool) -> dict[str, str]:
    return {
        MANAGED: "true",
        INSTANCE: instance,
        SESSION: session_id,
        OWNER: owner,
        NODE: node,
        POOL: "true" if pooled else "false",
    }


def instance_filter(instance: str) -> dict[str, list[str]]:
    """A Docker `filters=` value selecting every container of one server instance, on any node.

    Several nodes of a test cluster may share one engine, so callers also check the node label.
    """
    return {"label": [f"{MANAGED}=true", f"{INSTANCE}={instance}"]}
