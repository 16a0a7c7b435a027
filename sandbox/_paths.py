"""Workspace path checks done on the host before a request reaches a sandbox."""

from __future__ import annotations

import posixpath

from sandbox.errors import InvalidPath

MAX_PATH_LENGTH = 1024


def workspace_relative(path: str, *, allow_root: bool = False) -> str:
    """Normalise a caller's path to a workspace-relative one, refusing anything that could leave it.

    Refused: absolute paths, any `..` component, NUL bytes, backslashes, over-long paths.
    Symlink escapes are refused again inside the sandbox, where the links can be resolved.
    """
    if not isinstance(path, str):
        raise InvalidPath("path must be a string", path=repr(path))
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidPath(f"path longer than {MAX_PATH_LENGTH} characters")
    if "\x00" in path or "\\" in path:
        raise InvalidPath("path contains a NUL byte or a backslash", path=path)
    if path.startswith("/"):
        raise InvalidPath("absolute paths are refused; give a path relative to the workspace", path=path)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPath("'..' is refused in workspace paths", path=path)
    normal = posixpath.join(*parts) if parts else ""
    if not normal and not allow_root:
        raise InvalidPath("a file path is required", path=path)
    return normal
