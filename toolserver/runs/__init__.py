"""Agent runs on the server: LLM from config, tools through the tool service, a scheduler that never waits."""

from toolserver.runs.executor import ServerToolExecutor
from toolserver.runs.llm import build_llm
from toolserver.runs.scheduler import RunScheduler

__all__ = ["RunScheduler", "ServerToolExecutor", "build_llm"]
