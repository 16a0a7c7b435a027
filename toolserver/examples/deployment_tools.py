"""Example deployment tools: register with `"kind": "deployment", "import_path": "toolserver.examples.deployment_tools:word_count"`."""

from __future__ import annotations

import os


def word_count(text: str) -> dict[str, int]:
    """Count words and characters of a text."""
    return {"words": len(text.split()), "characters": len(text)}


class Greeter:
    """A stateful deployment tool: each replica counts the greetings it served."""

    def __init__(self) -> None:
        self.served = 0

    async def __call__(self, name: str) -> dict[str, object]:
        self.served += 1
        return {"greeting": f"hello, {name}", "served_by_pid": os.getpid(), "served": self.served}
