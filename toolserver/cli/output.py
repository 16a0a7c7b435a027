"""How commands print answers: JSON, with the SDK's models shown exactly as the server sent them."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

__all__ = ["plain", "print_json"]


def plain(value: Any) -> Any:
    """`value` with every model turned into the dict the server sent (no keys added)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def print_json(value: Any) -> None:
    """Print `value` as indented JSON."""
    print(json.dumps(plain(value), indent=2, default=str))
