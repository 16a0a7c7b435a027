"""Deployment tools: trusted Python on the server's path, each served as its own Ray Serve application.

Only an admin key may register one (the code runs with the server's privileges, not in a sandbox).
Each gets its own replicas, autoscaling and resources, and is added or removed without touching
the other applications.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from typing import Any

from ray import serve

from foundation.errors import ValidationFailed
from toolserver.tools.base import CallContext, ToolCallFailed, ToolRunner, ToolSpec

__all__ = ["DeploymentToolRunner", "ToolDeployment"]

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class ToolDeployment:
    """Wraps a function, or a class whose instances are callable, found at `module:attribute`."""

    def __init__(self, import_path: str) -> None:
        module_name, _, attribute = import_path.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        self._call: Any = target() if inspect.isclass(target) else target

    async def __call__(self, arguments: dict[str, Any]) -> Any:
        result = self._call(**arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


def _app_name(spec: ToolSpec) -> str:
    return f"tool-{spec.namespace or 'shared'}-{spec.name}"


class DeploymentToolRunner(ToolRunner):
    """Deploys on registration, calls through the application's handle, deletes on removal."""

    def prepare(self, spec: ToolSpec) -> None:
        path = str(spec.config.get("import_path", ""))
        if not _IMPORT_PATH.match(path):
            raise ValidationFailed(
                "import_path must look like 'package.module:attribute'", field="import_path"
            )

    async def deploy(self, spec: ToolSpec) -> None:
        options: dict[str, Any] = {
            "ray_actor_options": spec.config.get("ray_actor_options") or {"num_cpus": 0.1}
        }
        if spec.config.get("autoscaling"):
            options["autoscaling_config"] = spec.config["autoscaling"]
        else:
            options["num_replicas"] = int(spec.config.get("num_replicas") or 1)
        app = ToolDeployment.options(name=spec.name, **options).bind(spec.config["import_path"])  # type: ignore[attr-defined]
        try:
            await asyncio.to_thread(serve.run, app, name=_app_name(spec), route_prefix=None)
        except Exception as exc:
            raise ValidationFailed(
                f"could not deploy {spec.config['import_path']}: {exc}", field="import_path"
            ) from None

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    async def _handle(self, tool: ToolSpec) -> Any:
        # get_app_handle asks the Serve controller (a blocking call): once per app, not once per call.
        name = _app_name(tool)
        if name not in self._handles:
            try:
                self._handles[name] = await asyncio.to_thread(serve.get_app_handle, name)
            except Exception:
                await self.deploy(tool)
                self._handles[name] = await asyncio.to_thread(serve.get_app_handle, name)
        return self._handles[name]

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        handle = await self._handle(tool)
        timeout = float(tool.config.get("timeout_s", 60.0))
        try:
            return await asyncio.wait_for(handle.remote(arguments), timeout)
        except asyncio.TimeoutError:
            raise ToolCallFailed(
                f"deployment tool {tool.name} timed out after {timeout:g} s", error_type="timeout"
            ) from None
        except Exception as exc:
            self._handles.pop(_app_name(tool), None)  # the app may have been redeployed: look it up again
            raise ToolCallFailed(f"{type(exc).__name__}: {exc}"[:2000], error_type="tool_error") from None

    async def remove(self, spec: ToolSpec) -> None:
        self._handles.pop(_app_name(spec), None)
        try:
            await asyncio.to_thread(serve.delete, _app_name(spec))
        except Exception:
            pass
