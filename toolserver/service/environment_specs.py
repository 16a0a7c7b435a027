"""The specs of the environment center's environments, kept in Ray's GCS so a restarted center can rebuild them.

The center lives on some node; its environments' hubs live with it. When that node is lost, Ray restarts
the center elsewhere and it creates every environment again from the spec it was created with (new hub
and agents; the history stays in the database). The GCS lives on the head, so the specs last as long as
the cluster does, and no longer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

__all__ = ["EnvironmentSpecs"]

_KV_NAMESPACE = "toolserver-environments"

log = logging.getLogger(__name__)


class EnvironmentSpecs:
    """Saved (spec, agent session ids) per environment, keyed by namespace and name."""

    def __init__(self, kv_namespace: str = _KV_NAMESPACE) -> None:
        self._ns = kv_namespace

    @staticmethod
    def _key(namespace: str, name: str) -> bytes:
        return json.dumps([namespace, name]).encode()

    def save(self, namespace: str, name: str, spec: dict[str, Any], sessions: list[str]) -> None:
        from ray.experimental import internal_kv

        value = json.dumps({"spec": spec, "sessions": sessions}, default=str).encode()
        internal_kv._internal_kv_put(self._key(namespace, name), value, overwrite=True, namespace=self._ns)

    def drop(self, namespace: str, name: str) -> None:
        """Forget one spec; a failure is logged, not raised (a stale spec only makes a restore try more)."""
        from ray.experimental import internal_kv

        try:
            internal_kv._internal_kv_del(self._key(namespace, name), namespace=self._ns)
        except Exception:
            log.exception("could not forget the spec of environment %s/%s", namespace, name)

    def saved(self) -> list[tuple[str, str, dict[str, Any], list[str]]]:
        """Every saved environment: (namespace, name, spec, its agents' session ids)."""
        from ray.experimental import internal_kv

        found = []
        for key in internal_kv._internal_kv_list(b"", namespace=self._ns):
            raw = internal_kv._internal_kv_get(key, namespace=self._ns)
            if raw is None:
                continue
            namespace, name = json.loads(key)
            entry = json.loads(raw)
            found.append((namespace, name, entry["spec"], list(entry.get("sessions") or [])))
        return found

    def clear(self) -> None:
        """Forget every saved spec (a new server starts with none); a failure is logged, not raised."""
        try:
            for namespace, name, _, _ in self.saved():
                self.drop(namespace, name)
        except Exception:
            log.exception("could not clear the saved environment specs")
