"""Where a session may mount volumes: distinct, normalized paths below /workspace, at most a few."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from foundation.errors import ValidationFailed
from sandbox.base import VolumeMount

__all__ = ["MAX_VOLUMES", "VOLUME_ROOT", "check_volume_paths"]

MAX_VOLUMES = 8
VOLUME_ROOT = "/workspace"


def check_volume_paths(mounts: Sequence[VolumeMount], field: str = "volumes") -> None:
    """ValidationFailed (422, naming `volumes[i].path`) unless each path is its own, below /workspace."""
    if len(mounts) > MAX_VOLUMES:
        raise ValidationFailed(f"at most {MAX_VOLUMES} volumes per session", field=field)
    seen: list[str] = []
    for index, mount in enumerate(mounts):
        where = f"{field}[{index}].path"
        path = mount.path
        if (
            not path.startswith(VOLUME_ROOT + "/")
            or posixpath.normpath(path) != path
            or any(c in path for c in "\0\n:,")
            or len(path) > 256
        ):
            raise ValidationFailed(
                f"a volume's path must be a normalized absolute path below {VOLUME_ROOT}/ (e.g. /workspace/data),"
                f" not {path!r}",
                field=where,
            )
        for other in seen:
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise ValidationFailed(f"volume paths {other!r} and {path!r} overlap", field=where)
        seen.append(path)
    ids = [m.volume_id for m in mounts]
    if len(set(ids)) != len(ids):
        raise ValidationFailed("a session mounts each volume once", field=field)
