"""E2B paths to workspace paths: relative ones and ones under /workspace; nothing else is reachable."""

from __future__ import annotations

import posixpath

from sandbox.errors import InvalidPath

__all__ = ["WORKSPACE", "absolute", "relative"]

WORKSPACE = "/workspace"


def relative(path: str) -> str:
    """The workspace-relative form of an E2B path (checked again by the sandbox's own path rules)."""
    path = path.strip()
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        return path[len(WORKSPACE) :].lstrip("/")
    if path.startswith("/"):
        raise InvalidPath(
            f"{path!r} is outside the workspace: files of this server's sandboxes live in {WORKSPACE}"
            " (the home and working directory of its commands), give a path under it or a relative one",
            path=path,
        )
    return path


def absolute(rel: str) -> str:
    """The absolute path in the sandbox of a workspace-relative one."""
    return posixpath.join(WORKSPACE, rel) if rel else WORKSPACE
