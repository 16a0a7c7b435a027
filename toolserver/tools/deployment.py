"""Deployment tools: trusted Python on the server's path, each served as its own Ray Serve application.

Only an admin key may register one (the code runs with the server's privileges, not in a sandbox).
Each gets its own replicas, autoscaling and resources, and is added or removed without touching
the other applications. Ray Serve is imported when a tool is deployed or called, not with this module:
a server that is not on Serve uses `ServelessDeployments`, which says so.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import re
from typing import Any

from foundation.errors import Forbidden, UserError, ValidationFailed
from toolserver.tools.base import CallContext, ToolCallFailed, ToolDraft, ToolRunner, ToolSpec

__all__ = ["DeploymentToolRunner", "ServelessDeployments", "ToolDeployment"]

_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NEEDS_SERVE = "deployment tools need the server running on Ray Serve"


class ToolDeployment:
    """Wraps a function, or a class whose instances are callable, found at `module:attribute`.

    The Serve deployment of each tool is made from this class with that tool's options (`serve.deployment`).
    """

    def __init__(self, import_path: str) -> None:
        module_name, _, attribute = import_path.partition(":")
        target = getattr(importlib.import_module(module_name), attribute)
        self._call: Any = target() if inspect.isclass(target) else target

    async def __call__(self, arguments: dict[str, Any]) -> Any:
        """Call the target with `arguments` as keywords; an awaitable result is awaited."""
        result = self._call(**arguments)
        if inspect.isawaitable(result):
            result = await result
        return result


def _app_name(spec: ToolSpec) -> str:
    return f"tool-{spec.namespace or 'shared'}-{spec.name}"


class DeploymentToolRunner(ToolRunner):
    """Deploys on registration, calls through the application's handle, deletes on removal."""

    def __init__(self) -> None:
        self._handles: dict[str, Any] = {}

    def build_spec(self, draft: ToolDraft) -> ToolSpec:
        """A deployment tool from `import_path` and its Serve options; an admin key only."""
        if not draft.is_admin:  # trusted code on the server's path
            raise Forbidden("only an admin key may register deployment tools")
        fields = draft.fields
        if not fields.get("import_path"):
            raise ValidationFailed(
                "a deployment tool needs import_path (module:attribute)", field="import_path"
            )
        config = {
            "import_path": fields["import_path"],
            "num_replicas": fields.get("num_replicas") or 1,
            "ray_actor_options": fields.get("ray_actor_options") or {"num_cpus": 0.1},
            "autoscaling": fields.get("autoscaling"),
            "timeout_s": fields.get("timeout_s") or 60.0,
        }
        spec = draft.spec(config)
        self.prepare(spec)
        return spec

    def prepare(self, spec: ToolSpec) -> None:
        """Refuse an `import_path` that is not `package.module:attribute`."""
        path = str(spec.config.get("import_path", ""))
        if not _IMPORT_PATH.match(path):
            raise ValidationFailed(
                "import_path must look like 'package.module:attribute'", field="import_path"
            )

    async def install(self, spec: ToolSpec) -> None:
        """Deploy the tool's application before its record is stored."""
        await self.deploy(spec)

    async def uninstall(self, spec: ToolSpec) -> None:
        """Delete the tool's application."""
        await self.remove(spec)

    async def deploy(self, spec: ToolSpec) -> None:
        """Run the tool's Serve application (replicas or autoscaling as its config says)."""
        from ray import serve

        actor_options = dict(spec.config.get("ray_actor_options") or {"num_cpus": 0.1})
        runtime_env = dict(actor_options.get("runtime_env") or {})
        # Called through the tool service only: never an HTTP port of its own (Serve's direct ingress is on
        # for the ingress replica, whose environment its applications would otherwise inherit).
        runtime_env["env_vars"] = {
            **(runtime_env.get("env_vars") or {}),
            "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
        }
        actor_options["runtime_env"] = runtime_env
        options: dict[str, Any] = {"ray_actor_options": actor_options}
        if spec.config.get("autoscaling"):
            options["autoscaling_config"] = spec.config["autoscaling"]
        else:
            options["num_replicas"] = int(spec.config.get("num_replicas") or 1)
        deployment = serve.deployment(name=spec.name, **options)(ToolDeployment)
        app = deployment.bind(spec.config["import_path"])
        try:
            await asyncio.to_thread(serve.run, app, name=_app_name(spec), route_prefix=None)
        except Exception as exc:
            raise ValidationFailed(
                f"could not deploy {spec.config['import_path']}: {exc}", field="import_path"
            ) from None

    async def _handle(self, tool: ToolSpec) -> Any:
        from ray import serve

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
        """Call the tool's application (deployed again if it is gone) within the tool's timeout."""
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
        """Delete the tool's application, if it runs."""
        from ray import serve

        self._handles.pop(_app_name(spec), None)
        try:
            await asyncio.to_thread(serve.delete, _app_name(spec))
        except Exception:
            pass


class ServelessDeployments(DeploymentToolRunner):
    """Deployment tools where the server is not on Ray Serve: registering or calling one says so."""

    def prepare(self, spec: ToolSpec) -> None:
        """Refuse: there is nowhere to deploy it (after the admin and config checks, as on Serve)."""
        raise UserError(_NEEDS_SERVE)

    async def run(self, tool: ToolSpec, arguments: dict[str, Any], context: CallContext) -> Any:
        """Refuse: there is no application to call."""
        raise UserError(_NEEDS_SERVE)

    async def remove(self, spec: ToolSpec) -> None:
        """Nothing runs, so nothing to delete: removing the record is all there is."""
        return None
