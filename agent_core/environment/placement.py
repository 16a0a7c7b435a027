"""Where agent actors go: spread over the alive nodes, packed on one, or pinned to a node id."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from agent_core.environment.errors import NoLivingNode
from foundation.errors import ValidationFailed

__all__ = ["Placement", "PlacementPolicy", "choose_node"]

PlacementPolicy = Literal["spread", "pack", "node"]
_POLICIES = frozenset(get_args(PlacementPolicy))


@dataclass(frozen=True)
class Placement:
    """`spread`: the alive node with the fewest agents of the environment (round robin as they come);
    `pack`: the alive node with the most (the hub's node for the first); `node`: exactly `node_id`."""

    policy: PlacementPolicy = "spread"
    node_id: str | None = None

    def __post_init__(self) -> None:
        if self.policy not in _POLICIES:
            raise ValidationFailed(
                f"placement must be spread, pack or node:<node id>, got {self.policy!r}", field="placement"
            )
        if (self.policy == "node") != bool(self.node_id):
            raise ValidationFailed("a node id goes with the 'node' placement only", field="placement")

    @classmethod
    def parse(cls, value: str | Placement) -> Placement:
        """`"spread"`, `"pack"` or `"node:<node id>"`."""
        if isinstance(value, Placement):
            return value
        if not isinstance(value, str):
            raise ValidationFailed("placement must be a string", field="placement")
        if value.startswith("node:"):
            return cls("node", value[len("node:") :])
        return cls(value)  # type: ignore[arg-type]


def choose_node(
    placement: Placement,
    alive: Sequence[str],
    load: Mapping[str, int],
    *,
    exclude: Collection[str] = (),
    home: str | None = None,
) -> str:
    """The node for one more agent. `alive` in a stable order, `load` = agents per node, `home` = the
    hub's node (where `pack` starts); `exclude` = nodes to avoid (a restart moves away from them)."""
    if placement.policy == "node":
        if placement.node_id is None or placement.node_id not in alive:
            raise NoLivingNode(f"node {placement.node_id} is not alive", node_id=placement.node_id)
        return placement.node_id
    candidates = [n for n in alive if n not in exclude]
    if not candidates:
        raise NoLivingNode("no alive Ray node can take the agent", excluded=sorted(exclude))
    order = {node: i for i, node in enumerate(candidates)}
    if placement.policy == "spread":
        return min(candidates, key=lambda n: (load.get(n, 0), order[n]))
    busiest = max(candidates, key=lambda n: (load.get(n, 0), n == home, -order[n]))
    return busiest
