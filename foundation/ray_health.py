"""How fast Ray declares a lost node dead: the GCS health-check settings for the clusters the project starts.

Ray's GCS probes every raylet each `health_check_period_ms` and declares a node dead after
`health_check_failure_threshold` failed probes in a row; a probe fails when the raylet refuses the
connection (its process is gone: at once) or does not answer within `health_check_timeout_ms` (a machine
that vanished, or a raylet too busy to answer). Ray's defaults (3 s x 5, 10 s timeout) take ~15 s to
notice a killed node; only then are its actors restarted elsewhere, so that delay is most of what a node
loss costs. NODE_HEALTH_CHECKS notices a killed node in ~4 s while a raylet that is merely slow must stay
silent for ~4 x 5 s before it is declared dead (a false alarm kills a node, so the timeout stays long).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

__all__ = ["NODE_HEALTH_CHECKS", "RAY_DEFAULT_HEALTH_CHECKS", "apply_health_check_env", "health_check_env"]

NODE_HEALTH_CHECKS: Mapping[str, int] = {
    "health_check_period_ms": 1000,
    "health_check_failure_threshold": 4,
    "health_check_timeout_ms": 5000,
}
"""Our settings: `Cluster(head_node_args={"_system_config": dict(NODE_HEALTH_CHECKS)})` or `ray.init(...)`."""

RAY_DEFAULT_HEALTH_CHECKS: Mapping[str, int] = {
    "health_check_period_ms": 3000,
    "health_check_failure_threshold": 5,
    "health_check_timeout_ms": 10000,
}
"""Ray 2.x's own defaults, for comparison (bench/cluster_kill.py measures both)."""


def health_check_env(config: Mapping[str, int] = NODE_HEALTH_CHECKS) -> dict[str, str]:
    """The same settings as the `RAY_<name>` variables the GCS reads when it starts (`ray start --head`)."""
    return {f"RAY_{name}": str(value) for name, value in config.items()}


def apply_health_check_env(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set our health-check variables where the operator has not set them; returns the ones set."""
    target = os.environ if environ is None else environ
    added = {name: value for name, value in health_check_env().items() if name not in target}
    target.update(added)
    return added
