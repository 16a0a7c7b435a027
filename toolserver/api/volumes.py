"""Volumes: a namespace's size-capped filesystems that outlive sessions."""

from __future__ import annotations

from pydantic import Field

from toolserver.api.base import Reply

__all__ = ["Volume", "VolumeList", "VolumeMountInfo"]


class Volume(Reply):
    """A volume: its name, size cap and node; `used_bytes` and `mounted` when its node answered."""

    id: str
    name: str
    size_mb: int
    node_id: str
    created_at: float
    used_bytes: int | None = Field(None, description="bytes in use, as its filesystem counts them")
    mounted: bool | None = Field(None, description="whether its node has it mounted")


class VolumeList(Reply):
    """`GET /v1/volumes`."""

    volumes: list[Volume]


class VolumeMountInfo(Reply):
    """A volume a session mounts."""

    name: str
    path: str
    read_only: bool = False
