"""A distributed tool server and sandboxed execution backend for LLM agents."""

from __future__ import annotations

from toolserver.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]

__version__ = "0.1.0"
