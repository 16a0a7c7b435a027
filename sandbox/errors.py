"""Errors of the sandbox layer; each maps to an HTTP status through `foundation.errors`."""

from __future__ import annotations

from foundation.errors import Conflict, NotFound, PayloadTooLarge, RuntimeFailure, Unavailable, UserError

__all__ = [
    "FakeCannotRun",
    "FileTooLarge",
    "ImageNotAllowed",
    "ImageBuildError",
    "InvalidPath",
    "LimitsExceeded",
    "NotSupported",
    "PauseTooLarge",
    "RuntimeDirUnsafe",
    "RuntimeNotAllowed",
    "RuntimeUnavailable",
    "SandboxError",
    "SandboxGone",
    "SandboxNotFound",
    "SandboxUnavailable",
    "SessionBusy",
    "WorkspaceFileNotFound",
]


class SandboxError(RuntimeFailure):
    """A failure inside the sandbox layer that is not the caller's fault."""

    type = "sandbox_error"


class SandboxUnavailable(Unavailable):
    """The engine, the container or its guest daemon cannot be reached."""

    type = "sandbox_unavailable"


class SandboxGone(SandboxUnavailable):
    """The sandbox existed but its container died or was removed."""

    type = "sandbox_gone"


class SandboxNotFound(NotFound):
    """No live sandbox for this session id on this node."""

    type = "session_not_found"


class WorkspaceFileNotFound(NotFound):
    """No such file or directory in the workspace."""

    type = "file_not_found"


class InvalidPath(UserError):
    """A workspace path that is absolute, climbs out with `..`, or escapes through a symlink."""

    type = "invalid_path"


class FileTooLarge(PayloadTooLarge):
    """A file over the per-file cap, or one the workspace has no room for."""

    type = "file_too_large"


class LimitsExceeded(UserError):
    """Requested limits above the server-wide maxima."""

    status = 422
    type = "limits_exceeded"


class RuntimeNotAllowed(UserError):
    """A container runtime the operator did not allow (TOOLSERVER_ALLOWED_RUNTIMES)."""

    status = 422
    type = "runtime_not_allowed"


class RuntimeUnavailable(SandboxUnavailable):
    """The node's Docker engine has no such runtime registered (an operator's fix: scripts/setup.sh)."""

    type = "runtime_unavailable"


class RuntimeDirUnsafe(SandboxError):
    """The sandboxes' runtime directory exists but is not private to this server (a start-up error)."""

    type = "runtime_dir_unsafe"


class ImageBuildError(SandboxError):
    """Building the sandbox image failed."""

    type = "image_build_error"


class ImageNotAllowed(UserError):
    """An image the operator did not list, or one missing from the node (sessions never pull)."""

    status = 422
    type = "image_not_allowed"


class FakeCannotRun(SandboxError):
    """The fake sandbox was asked to run code it has no scripted answer for: it runs nothing, and never pretends."""

    type = "fake_cannot_run"


class NotSupported(SandboxError):
    """This kind of sandbox has no such capability (the fake has no ports, for one): 501."""

    status = 501
    type = "not_supported"


class SessionBusy(Conflict):
    """The session has calls or connections under way that a pause would cut (409: pause it after they end)."""

    type = "session_busy"


class PauseTooLarge(PayloadTooLarge):
    """A pause or snapshot whose workspace archive would pass its cap (507: the node will not store it)."""

    status = 507
    type = "pause_too_large"
