"""Clearing what some gVisor releases leave behind, so that a restored container can be restored again.

runsc 20221219 (Debian 12's) keeps a restored container's state as "paused"; when that container is
checkpointed again, its state file outlives the container, and the next `docker start --checkpoint` fails with
"id already in use". `runsc delete --force` removes the file (and then panics on the same state, harmlessly).
Only a server that runs as root on the engine's machine can do this; elsewhere the resume falls back to the
files, saying why.
"""

from __future__ import annotations

import os
import subprocess

__all__ = ["STATE_ROOTS", "clear_stale_state", "is_stale_state_error"]

STATE_ROOTS = ("/var/run/docker/runtime-runc/moby", "/run/docker/runtime-runc/moby")


def is_stale_state_error(exc: BaseException) -> bool:
    """Whether a failed restore is runsc refusing an id it still holds."""
    return "id already in use" in str(exc)


def _holds(root: str, container_id: str) -> bool:
    try:
        return any(name.startswith(container_id) for name in os.listdir(root))
    except OSError:
        return False


def clear_stale_state(runtime_path: str, container_id: str) -> bool:
    """Remove runsc's leftover state of `container_id`; whether it is gone now."""
    if os.geteuid() != 0 or not runtime_path:
        return False
    for root in STATE_ROOTS:
        if _holds(root, container_id):
            subprocess.run(
                [runtime_path, "--root", root, "delete", "--force", container_id],
                capture_output=True,
                timeout=30,
                check=False,
            )
            return not _holds(root, container_id)
    return False
