"""Sandboxes: one hardened container per agent session with a persistent shell, a kernel and files.

The Docker backend is imported lazily so that the interface and the fake need no Docker SDK.
"""

from __future__ import annotations

from typing import Any

from sandbox.base import (
    Display,
    FileEntry,
    Limits,
    PythonError,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxOps,
    SandboxSpec,
    SessionOps,
    ShellResult,
)
from sandbox.config import DEFAULT_IMAGE, SandboxConfig
from sandbox.fake import FakeBackend, FakeSandbox

__all__ = [
    "DEFAULT_IMAGE",
    "Display",
    "DockerBackend",
    "FakeBackend",
    "FakeSandbox",
    "FileEntry",
    "Limits",
    "PythonError",
    "PythonResult",
    "Sandbox",
    "SandboxBackend",
    "SandboxConfig",
    "SandboxInfo",
    "SandboxManager",
    "SandboxOps",
    "SandboxPool",
    "SandboxSpec",
    "SessionOps",
    "ShellResult",
]


def __getattr__(name: str) -> Any:
    """The Docker backend, the manager and the pool, imported on first use."""
    if name == "DockerBackend":
        from sandbox.docker import DockerBackend

        return DockerBackend
    if name == "SandboxManager":
        from sandbox.manager import SandboxManager

        return SandboxManager
    if name == "SandboxPool":
        from sandbox.pool import SandboxPool

        return SandboxPool
    raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
