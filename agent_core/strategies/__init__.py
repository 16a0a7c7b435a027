"""Strategies: how a run uses the loop. The seam (`Strategy`, in `base`), the strategies, and the factory.

`function_calling` is the plain `AgentLoop`; `plan_execute` and `reflection` drive inner loops and
keep their own progress in `RunState.strategy`, so they pause for a human and resume like the loop.
Steps of an inner loop are re-numbered into the outer run and tagged (`subtask` or `attempt`).
"""

from __future__ import annotations

from typing import Any, Literal

from agent_core.errors import UnknownStrategy
from agent_core.llm.base import LLMClient
from agent_core.loop import AgentLoop, LoopSettings
from agent_core.strategies.base import Strategy, extract_json
from agent_core.strategies.plan_execute import PlanAndExecute
from agent_core.strategies.reflection import CritiqueMemory, InMemoryCritiqueMemory, Reflection
from agent_core.tools import ToolExecutor

__all__ = [
    "CritiqueMemory",
    "InMemoryCritiqueMemory",
    "PlanAndExecute",
    "Reflection",
    "Strategy",
    "StrategyName",
    "build_strategy",
    "extract_json",
]

StrategyName = Literal["function_calling", "plan_execute", "reflection"]


def build_strategy(
    name: StrategyName, llm: LLMClient, tools: ToolExecutor, settings: LoopSettings, **options: Any
) -> Strategy:
    """The strategy called `name`; `options` go to its constructor (e.g. `max_attempts`, `memory`)."""
    if name == "function_calling":
        if options:
            raise TypeError(f"function_calling takes no options, got {sorted(options)}")
        return AgentLoop(llm, tools, settings)
    if name == "plan_execute":
        return PlanAndExecute(llm, tools, settings, **options)
    if name == "reflection":
        return Reflection(llm, tools, settings, **options)
    raise UnknownStrategy(
        f"unknown strategy {name!r}; choose function_calling, plan_execute or reflection", strategy=name
    )
