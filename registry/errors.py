"""Errors of the registry layer.

    RuntimeFailure (foundation.errors)
    └── RegistryError               the database failed or holds something this code cannot use
        ├── SchemaTooNew            the database was written by a newer toolserver
        └── RegistryUnavailable     the database cannot be reached or stayed locked (also an Unavailable)
    Conflict (foundation.errors)
    └── WriteConflict               a write hit a unique constraint (a duplicate or a concurrent writer)

Missing rows raise `foundation.errors.NotFound`, duplicates `foundation.errors.Conflict`.
"""

from __future__ import annotations

from foundation.errors import Conflict, RuntimeFailure, Unavailable

__all__ = ["RegistryError", "RegistryUnavailable", "SchemaTooNew", "WriteConflict"]


class RegistryError(RuntimeFailure):
    """The registry's database failed in a way the caller could not prevent."""

    type = "registry_error"


class SchemaTooNew(RegistryError):
    """The database schema is newer than this code understands."""

    type = "schema_too_new"

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"the registry database has schema version {found}, but this toolserver supports up to "
            f"version {supported}; upgrade toolserver (or point TOOLSERVER_DATABASE_URL at another database)",
            found=found,
            supported=supported,
        )
        self.found = found
        self.supported = supported


class RegistryUnavailable(RegistryError, Unavailable):
    """The database is down, unreachable, or stayed locked past the busy timeout."""

    type = "registry_unavailable"


class WriteConflict(Conflict):
    """A write violated a unique constraint; stores retry these when a concurrent writer is the cause."""

    type = "conflict"
