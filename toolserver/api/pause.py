"""The wire models of pausing a session: what a pause kept, what a resume restored."""

from __future__ import annotations

from pydantic import Field

from toolserver.api.base import Reply

__all__ = ["PauseKept", "SessionResumed"]


class PauseKept(Reply):
    """What a pause kept: the files always; the memory (shell, kernel, processes) where the runtime checkpoints."""

    filesystem: bool = Field(description="/workspace and /tmp (volumes keep their own data)")
    memory: bool = Field(description="the running shell, kernel variables and background processes (runsc)")
    archive_bytes: int | None = Field(None, description="the size of the kept files' archive")
    memory_bytes: int | None = Field(
        None, description="the size of the memory checkpoint on the node's disk, where it could be read"
    )
    note: str | None = Field(None, description="why the memory was not kept, when it was not")


class SessionResumed(Reply):
    """What the last resume restored: `kernel` is `fresh` (files only) or `restored` (from the checkpoint)."""

    kernel: str = Field(description="`fresh`: a new shell and kernel; `restored`: they came back with memory")
    memory: bool
    at: float | None = None
    seconds: float | None = Field(None, description="how long the resume took on the node")
    note: str | None = None
