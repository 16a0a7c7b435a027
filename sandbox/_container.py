"""The Docker engine's side of a session: the hardened container spec, and finding, inspecting, removing containers.

Every call here blocks (the Docker SDK is synchronous): the backend runs them in a thread.
"""

from __future__ import annotations

import builtins
import os
from typing import Any

from sandbox import _hostdirs, _labels
from sandbox._runtimes import EngineRuntimes, resource_options
from sandbox.base import SandboxInfo
from sandbox.config import SandboxConfig
from sandbox.egress.gate import proxy_environment
from sandbox.errors import ImageNotAllowed, SandboxUnavailable

__all__ = ["GUEST_DIR", "OPEN_NETWORK", "ContainerEngine", "container_name", "private_dir"]

GUEST_DIR = "/sbx"
"""Where a container sees the shared part of its private directory."""
OPEN_NETWORK = "toolserver-open"
"""The Docker network of sessions with network "bridge": a bridge of its own, with inter-container traffic off."""
_NO_ICC = {"com.docker.network.bridge.enable_icc": "false"}


def container_name(session_id: str) -> str:
    """The container's name on the engine: one per session."""
    return f"tsbx-{session_id}"


class ContainerEngine:
    """One node's Docker engine as the sandboxes need it; the client is made on first use."""

    def __init__(self, config: SandboxConfig, client: Any = None) -> None:
        self.config = config
        self._client = client
        self._runtimes = EngineRuntimes()

    @property
    def client(self) -> Any:
        """The Docker client; SandboxUnavailable when the engine does not answer."""
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except Exception as exc:
                self._client = None
                raise SandboxUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    def runtimes(self) -> tuple[str, ...]:
        """The container runtimes this engine has registered."""
        return self._runtimes.names(self.client)

    def run(
        self, info: SandboxInfo, host_dir: str, pooled: bool, binds: dict[str, dict[str, str]] | None = None
    ) -> Any:
        """Create and start the container; the image must already be on this engine (never pulled).

        `binds` are its volumes (host directory -> where and how the sandbox sees it), below /workspace.
        """
        import docker.errors

        config, limits = self.config, info.limits
        self._runtimes.require(self.client, info.runtime, config.node_id)
        tmpfs_opts = f"uid={config.uid},gid={config.uid},exec,nosuid,nodev"
        tmpfs = {
            "/workspace": f"size={limits.disk_mb}m,mode=0700,{tmpfs_opts}",
            "/tmp": f"size={limits.tmp_mb}m,mode=1777,{tmpfs_opts}",
            # The guest daemon's own scratch space, so a full /tmp cannot stop the shell.
            "/run/sbxd": f"size=4m,mode=0700,{tmpfs_opts}",
        }
        missing = ImageNotAllowed(
            f"image {info.image!r} is not present on node {config.node_id}; sessions never pull"
            " images: the operator builds or pulls it on every node",
            field="image",
        )
        try:
            image = self.client.images.get(info.image)
        except docker.errors.ImageNotFound:
            raise missing from None
        # An image's VOLUME would get an anonymous volume: outside disk_mb, writable past the read-only
        # root, and left behind. Each declared path gets a size-capped tmpfs instead.
        for path in (image.attrs.get("Config") or {}).get("Volumes") or {}:
            tmpfs.setdefault(str(path), f"size={limits.tmp_mb}m,mode=1777,{tmpfs_opts}")
        # One MiB above the largest tmpfs, so that a full workspace reads ENOSPC rather than SIGXFSZ.
        file_cap = (max(limits.disk_mb, limits.tmp_mb) + 1) * 1024 * 1024
        resources = resource_options(info.runtime, limits, file_cap)
        resources["environment"].update(TOOLSERVER_SESSION=info.session_id, TOOLSERVER_NODE=config.node_id)
        if info.network == "egress":
            resources["environment"].update(proxy_environment(GUEST_DIR))
        create = self.client.containers.create  # unlike containers.run, create never pulls
        try:
            container = create(
                info.image,
                detach=True,
                name=container_name(info.session_id),
                hostname="sandbox",
                labels=_labels.labels_for(
                    instance=config.instance_id,
                    session_id=info.session_id,
                    owner=info.owner,
                    node=config.node_id,
                    pooled=pooled,
                ),
                user=f"{config.uid}:{config.uid}",
                network_mode=self._network_mode(info.network),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs=tmpfs,
                volumes={_hostdirs.shared_dir(host_dir): {"bind": GUEST_DIR, "mode": "rw"}, **(binds or {})},
                nano_cpus=int(limits.cpus * 1e9),
                init=True,
                ipc_mode="private",
                **resources,
            )
        except docker.errors.ImageNotFound:
            raise missing from None
        container.start()
        return container

    def _network_mode(self, network: str) -> str:
        """`none` (also for "egress": the proxy is a socket), or the open network (made on first use)."""
        if network in ("none", "egress"):
            return "none"
        import docker.errors

        try:
            existing = self.client.networks.get(OPEN_NETWORK)
        except docker.errors.NotFound:
            try:
                self.client.networks.create(OPEN_NETWORK, driver="bridge", options=_NO_ICC)
            except docker.errors.APIError as exc:
                if "already exists" not in str(exc):
                    raise
            existing = self.client.networks.get(OPEN_NETWORK)
        options = existing.attrs.get("Options") or {}
        if existing.attrs.get("Driver") != "bridge" or any(options.get(k) != v for k, v in _NO_ICC.items()):
            raise SandboxUnavailable(
                f"the Docker network {OPEN_NETWORK!r} exists without inter-container traffic off; remove it"
                " (docker network rm) and the server makes it again"
            )
        return OPEN_NETWORK

    def owned(self, adopt_from: set[str]) -> builtins.list[Any]:
        """This instance's containers of this node, and of the vanished nodes in `adopt_from`."""
        nodes = {self.config.node_id, *adopt_from}
        found = self.client.containers.list(
            all=True, filters=_labels.instance_filter(self.config.instance_id)
        )
        return [c for c in found if c.labels.get(_labels.NODE) in nodes]

    def state(self, container_id: str) -> str:
        """What became of a container, in words (removed, OOM-killed, exited with a code)."""
        import docker.errors

        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return "container removed"
        state = container.attrs.get("State", {})
        if state.get("OOMKilled"):
            return "killed for exceeding its memory limit"
        return f"container {state.get('Status', 'unknown')}, exit code {state.get('ExitCode')}"

    def remove(self, name_or_id: str) -> None:
        """Remove a container and its anonymous volumes; a no-op when it is gone or already going."""
        import docker.errors

        try:
            self.client.containers.get(name_or_id).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def private_dir(container: Any) -> str | None:
    """The private host directory of a container: the parent of what is mounted at its /sbx."""
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == GUEST_DIR:
            return os.path.dirname(str(mount.get("Source")))
    return None
