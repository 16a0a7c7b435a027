"""A distributed tool server and sandboxed execution backend for LLM agents.

Heavy parts (Ray, FastAPI) are imported lazily so that `sandbox` and `registry` can use
`toolserver.errors` without pulling the server in.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AsyncClient", "Client", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from toolserver import client

        return getattr(client, name)
    raise AttributeError(f"module 'toolserver' has no attribute {name!r}")
