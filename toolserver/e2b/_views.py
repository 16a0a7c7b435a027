"""E2B's shapes of a session: the templates it may name, and the bodies of the control API's answers."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from foundation.errors import UserError
from toolserver.e2b._keys import as_e2b_key
from toolserver.e2b._records import E2BRecord

__all__ = ["ENVD_VERSION", "TemplateMap", "created_view", "detail_view", "e2b_state"]

ENVD_VERSION = "0.5.7"
"""The envd version the front speaks: default user, stdin close, octet-stream uploads; no file metadata."""
DEFAULT_TEMPLATES = ("base", "code-interpreter-v1", "code-interpreter")
"""Templates that mean the server's sandbox image, unless the operator maps them elsewhere."""


class TemplateMap:
    """E2B template names to allowed images: `TOOLSERVER_E2B_TEMPLATES` (`name=image,...`) over the defaults."""

    def __init__(self, setting: str, default_image: str, allowed: tuple[str, ...]) -> None:
        self.images: dict[str, str] = dict.fromkeys(DEFAULT_TEMPLATES, default_image)
        for entry in (e.strip() for e in setting.split(",") if e.strip()):
            name, sep, image = entry.partition("=")
            if not sep or not name.strip() or not image.strip():
                raise UserError(f"TOOLSERVER_E2B_TEMPLATES entry {entry!r} is not name=image")
            self.images[name.strip()] = image.strip()
        self.allowed = allowed

    def image(self, template: str) -> str:
        """The image of `template` (a mapped name, or an allowed image named directly)."""
        name = template.split(":", 1)[0] if template not in self.images else template
        if name in self.images:
            return self.images[name]
        if template in self.allowed:
            return template
        known = ", ".join(sorted(self.images))
        raise UserError(f"unknown template {template!r}: this server offers {known}", field="templateID")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _end_at(session: dict[str, Any]) -> float:
    last = session.get("last_used_at") or session["created_at"]
    return float(last) + float(session.get("ttl_s") or 0)


def created_view(session: dict[str, Any], record: E2BRecord, key: str) -> dict[str, Any]:
    """`Sandbox`: what create and connect answer; the access tokens are the caller's key in E2B form."""
    token = as_e2b_key(key)
    return {
        "templateID": record.template,
        "sandboxID": session["id"],
        "clientID": session.get("node_id") or "toolserver",
        "envdVersion": ENVD_VERSION,
        "envdAccessToken": token,
        "trafficAccessToken": token,
        "domain": None,
    }


def e2b_state(session: dict[str, Any]) -> str:
    """E2B's `state` of a session: `paused` or `running`."""
    return "paused" if session.get("status") == "paused" else "running"


def detail_view(session: dict[str, Any], record: E2BRecord, key: str | None = None) -> dict[str, Any]:
    """`SandboxDetail` (get info) and, without the token, `ListedSandbox` (list)."""
    limits = session.get("limits") or {}
    network = session.get("network")
    view: dict[str, Any] = {
        "templateID": record.template,
        "sandboxID": session["id"],
        "clientID": session.get("node_id") or "toolserver",
        "startedAt": _iso(float(session["created_at"])),
        "endAt": _iso(max(_end_at(session), time.time())),
        "envdVersion": ENVD_VERSION,
        "cpuCount": max(1, round(float(limits.get("cpus", 1)))),
        "memoryMB": int(limits.get("memory_mb", 0)),
        "diskSizeMB": int(limits.get("disk_mb", 0)),
        "state": e2b_state(session),
        "metadata": record.metadata,
        "allowInternetAccess": network not in (None, "none"),
    }
    if key is not None:
        view["envdAccessToken"] = as_e2b_key(key)
        view["domain"] = None
    return view
