"""Docker backend: one hardened container per session, reached through its private directory.

The container runs the guest daemon (persistent bash, file access, kernel supervision) and an
IPython kernel. The host talks to both over unix sockets in a bind-mounted directory, so the
container needs no network at all.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import time
from dataclasses import asdict, replace
from typing import Any

from foundation.errors import PayloadTooLarge, UserError
from sandbox import _hostdirs, _labels
from sandbox._guest_client import GuestClient
from sandbox._ids import new_session_id
from sandbox._kernel import KernelConnection, message_cap, write_connection_files
from sandbox._paths import workspace_relative
from sandbox._runtime_dir import prepare_runtime_dir
from sandbox.base import (
    FileEntry,
    Limits,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxSpec,
    ShellResult,
)
from sandbox.config import SandboxConfig
from sandbox.errors import (
    ImageNotAllowed,
    SandboxGone,
    SandboxNotFound,
    SandboxUnavailable,
)

__all__ = ["DockerBackend", "DockerSandbox"]

log = logging.getLogger(__name__)

_GUEST_DIR = "/sbx"
OPEN_NETWORK = "toolserver-open"
"""The Docker network of sessions with network "bridge": a bridge of its own, with inter-container traffic off."""
_NO_ICC = {"com.docker.network.bridge.enable_icc": "false"}
_META_FILE = "meta.json"


class DockerSandbox(Sandbox):
    """A live container plus host-side connections to its guest daemon and kernel."""

    def __init__(self, info: SandboxInfo, host_dir: str, config: SandboxConfig) -> None:
        self._info = info
        self.host_dir = host_dir  # the private directory; the container sees only its `sbx` child
        self._config = config
        self._guest = GuestClient(_hostdirs.guest_socket(host_dir))
        self._kernel: KernelConnection | None = None
        self._kernel_lock = asyncio.Lock()
        self._kernel_dead = False
        self.last_used = time.time()

    @property
    def info(self) -> SandboxInfo:
        return self._info

    def set_owner(self, owner: str) -> None:
        """Hand a pooled sandbox to its tenant (labels are immutable; the directory records it)."""
        self._info = replace(self._info, owner=owner)
        _write_meta(self.host_dir, self._info)

    async def connect(self) -> None:
        """Wait for the guest daemon and the kernel to answer; from then on the sandbox can write nothing in /sbx."""
        await self._guest.wait_ready(self._config.ready_timeout_s)
        await asyncio.to_thread(_hostdirs.freeze_guest_dir, self.host_dir)
        await self._ensure_kernel()

    async def ping(self) -> dict[str, Any]:
        return await self._guest.ping()

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        self._check_code(command, "command")
        self.last_used = time.time()
        return await self._guest.shell(command, _timeout(timeout_s), self._config.output_limit)

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        self._check_code(code, "code")
        self.last_used = time.time()
        async with self._kernel_lock:
            kernel = await self._ensure_kernel()
            result = await kernel.execute(
                code,
                _timeout(timeout_s),
                interrupt=self._interrupt_kernel,
                is_alive=self._kernel_alive,
                output_limit=self._config.output_limit,
            )
            if kernel.breach is not None or (result.error is not None and result.error.ename == "KernelDied"):
                self._kernel_dead = True  # the next call gets a fresh kernel
            return result

    async def restart_python(self) -> None:
        async with self._kernel_lock:
            await self._restart_kernel()

    async def write_file(self, path: str, data: bytes) -> FileEntry:
        self.last_used = time.time()
        return await self._guest.write(workspace_relative(path), data, self._config.max_file_bytes)

    async def read_file(self, path: str) -> bytes:
        self.last_used = time.time()
        return await self._guest.read(workspace_relative(path), self._config.max_file_bytes)

    async def list_files(self, path: str = "") -> builtins.list[FileEntry]:
        self.last_used = time.time()
        return await self._guest.list(workspace_relative(path, allow_root=True))

    async def close(self) -> None:
        if self._kernel is not None:
            await self._kernel.close()
            self._kernel = None

    def _check_code(self, text: str, field: str) -> None:
        if len(text.encode("utf-8", "replace")) > self._config.max_code_bytes:
            raise PayloadTooLarge(
                f"{field} is larger than the {self._config.max_code_bytes} byte cap", field=field
            )

    async def _ensure_kernel(self) -> KernelConnection:
        if self._kernel is not None and self._kernel.breach is not None:
            self._kernel_dead = True  # it broke the caps between two calls
        if self._kernel_dead or not await self._kernel_alive():
            await self._restart_kernel()
        if self._kernel is None:
            self._kernel = await KernelConnection.connect(
                os.path.join(self.host_dir, "kernel.host.json"), self._config.ready_timeout_s
            )
        return self._kernel

    async def _restart_kernel(self) -> None:
        if self._kernel is not None:
            await self._kernel.close()
            self._kernel = None
        await self._guest.kernel("kernel_restart")
        self._kernel_dead = False
        self._kernel = await KernelConnection.connect(
            os.path.join(self.host_dir, "kernel.host.json"), self._config.ready_timeout_s
        )

    async def _interrupt_kernel(self) -> None:
        await self._guest.kernel("kernel_interrupt")

    async def _kernel_alive(self) -> bool:
        status = await self._guest.kernel("kernel_status")
        return bool(status.get("alive"))


def _timeout(timeout_s: float) -> float:
    if not 0 < timeout_s <= 3600:
        raise UserError("timeout_s must be between 0 and 3600 seconds", field="timeout_s")
    return float(timeout_s)


def _write_meta(host_dir: str, info: SandboxInfo) -> None:
    meta = {
        "session_id": info.session_id,
        "owner": info.owner,
        "created_at": info.created_at,
        "limits": asdict(info.limits),
    }
    tmp = os.path.join(host_dir, _META_FILE + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, os.path.join(host_dir, _META_FILE))


def _read_meta(host_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(host_dir, _META_FILE)) as fh:
            data = json.load(fh)
            return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _with_sandbox_uid(config: SandboxConfig) -> SandboxConfig:
    """The config with a sandbox uid that is not the server's own, nor root.

    A sandbox running as the server's uid could chmod the server's directories back to writable.
    """
    euid = os.geteuid()
    if config.uid == 0:
        raise UserError("sandboxes never run as root: the sandbox uid must not be 0", field="uid")
    if config.uid != euid:
        return config
    uid = config.uid + 1
    log.warning("the server runs as uid %d, the sandboxes' default: they run as uid %d instead", euid, uid)
    return replace(config, uid=uid)


def _private_dir(container: Any) -> str | None:
    """The private host directory of a container: the parent of what is mounted at its /sbx."""
    for mount in container.attrs.get("Mounts", []):
        if mount.get("Destination") == _GUEST_DIR:
            return os.path.dirname(str(mount.get("Source")))
    return None


class DockerBackend(SandboxBackend):
    """Creates and tracks hardened session containers on the local Docker engine."""

    def __init__(self, config: SandboxConfig | None = None, client: Any = None) -> None:
        self.config = config or SandboxConfig()
        self._client = client
        self._sandboxes: dict[str, DockerSandbox] = {}
        prepare_runtime_dir(self.config.runtime_dir)
        self.config = _with_sandbox_uid(self.config)
        # Unix socket paths are short (107 bytes), so the node part of the directory is abbreviated.
        self._root = os.path.join(self.config.runtime_dir, self.config.instance_id, self.config.node_id[:12])

    @property
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except Exception as exc:
                self._client = None
                raise SandboxUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return self._client

    async def create(
        self, spec: SandboxSpec, session_id: str | None = None, *, pooled: bool = False
    ) -> DockerSandbox:
        self.config.check_spec(spec)
        session_id = session_id or new_session_id()
        host_dir = await asyncio.to_thread(self._make_host_dir, session_id)
        info = SandboxInfo(
            session_id=session_id,
            container_id="",
            owner=spec.owner,
            image=spec.image or self.config.image,
            node_id=self.config.node_id,
            network=spec.network,
            limits=spec.limits,
            created_at=time.time(),
        )
        try:
            write_connection_files(
                _hostdirs.shared_dir(host_dir),
                _GUEST_DIR,
                private_dir=host_dir,
                max_message=message_cap(self.config.output_limit),
            )
            _write_meta(host_dir, info)
            container = await asyncio.to_thread(self._run_container, info, host_dir, pooled)
            info = replace(info, container_id=container.id)
            sandbox = DockerSandbox(info, host_dir, self.config)
            await sandbox.connect()
        except BaseException:
            await asyncio.to_thread(self._remove_container, f"tsbx-{session_id}")
            await asyncio.to_thread(_hostdirs.remove_dirs, host_dir)
            raise
        self._sandboxes[session_id] = sandbox
        return sandbox

    async def get(self, session_id: str) -> DockerSandbox:
        sandbox = self._sandboxes.get(session_id)
        if sandbox is None:
            raise SandboxNotFound(f"no sandbox for session {session_id}", session_id=session_id)
        return sandbox

    async def check_alive(self, session_id: str) -> None:
        """Raise SandboxGone with the container's fate when its guest no longer answers."""
        sandbox = await self.get(session_id)
        try:
            await sandbox.ping()
        except SandboxUnavailable:
            state = await asyncio.to_thread(self._container_state, sandbox.info.container_id)
            raise SandboxGone(
                f"the sandbox of session {session_id} is gone ({state})", session_id=session_id
            ) from None

    async def destroy(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        host_dir = os.path.join(self._root, session_id)
        if sandbox is not None:
            host_dir = sandbox.host_dir
            await sandbox.close()
        await asyncio.to_thread(self._remove_container, f"tsbx-{session_id}")
        await asyncio.to_thread(_hostdirs.remove_dirs, host_dir)

    async def list(self) -> builtins.list[SandboxInfo]:
        return [s.info for s in self._sandboxes.values()]

    async def close(self) -> None:
        for session_id in list(self._sandboxes):
            await self.destroy(session_id)
        for container in await asyncio.to_thread(self._owned_containers, set()):
            await asyncio.to_thread(self._remove_container, container.id)
        await asyncio.to_thread(self._remove_stray_dirs)
        for path in (self._root, os.path.dirname(self._root)):
            try:
                os.rmdir(path)  # only when empty: other nodes of the instance may share the parent
            except OSError:
                pass

    async def reconcile(
        self, live_session_ids: set[str], adopt_from: set[str] | None = None
    ) -> dict[str, builtins.list[str]]:
        """Re-attach containers of live sessions; remove every other container this manager owns.

        `adopt_from` names nodes that no longer exist (a restarted single-node server gets a new Ray
        node id): their containers on this engine are treated as this node's own.
        """
        attached: builtins.list[str] = []
        removed: builtins.list[str] = []
        for container in await asyncio.to_thread(self._owned_containers, adopt_from or set()):
            session_id = container.labels.get(_labels.SESSION, "")
            running = container.status == "running"
            if session_id in live_session_ids and running and session_id not in self._sandboxes:
                try:
                    await self._attach(container, session_id)
                    attached.append(session_id)
                    continue
                except Exception:
                    pass
            if session_id in self._sandboxes:
                continue
            await asyncio.to_thread(self._remove_container, container.id)
            private = _private_dir(container) or os.path.join(self._root, session_id)
            await asyncio.to_thread(_hostdirs.remove_dirs, private)
            removed.append(session_id)
        await asyncio.to_thread(self._remove_stray_dirs)
        return {"attached": attached, "removed": removed}

    async def _attach(self, container: Any, session_id: str) -> None:
        host_dir = _private_dir(container) or os.path.join(self._root, session_id)
        meta = _read_meta(host_dir)
        labels = container.labels
        host_config = container.attrs.get("HostConfig", {})
        try:
            limits = Limits(**meta["limits"])
        except (KeyError, TypeError):  # metadata of an older server: what the engine knows
            limits = Limits(
                memory_mb=int(host_config.get("Memory", 0) // (1024 * 1024)) or Limits().memory_mb,
                cpus=(host_config.get("NanoCpus", 0) or 1e9) / 1e9,
                pids=int(host_config.get("PidsLimit") or Limits().pids),
            )
        info = SandboxInfo(
            session_id=session_id,
            container_id=container.id,
            owner=str(meta.get("owner", labels.get(_labels.OWNER, ""))),
            image=container.attrs.get("Config", {}).get("Image", self.config.image),
            node_id=self.config.node_id,
            network="none" if host_config.get("NetworkMode") in ("none", "", None) else "bridge",
            limits=limits,
            created_at=float(meta.get("created_at", time.time())),
        )
        sandbox = DockerSandbox(info, host_dir, self.config)
        await sandbox.connect()
        self._sandboxes[session_id] = sandbox

    def _make_host_dir(self, session_id: str) -> str:
        return _hostdirs.make_dirs(self._root, session_id, self.config.shared_dir_mb)

    def _remove_stray_dirs(self) -> None:
        if not os.path.isdir(self._root):
            return
        for name in os.listdir(self._root):
            if name not in self._sandboxes:
                _hostdirs.remove_dirs(os.path.join(self._root, name))

    def _run_container(self, info: SandboxInfo, host_dir: str, pooled: bool) -> Any:
        """Create and start the container; the image must already be on this engine (never pulled)."""
        import docker.errors
        import docker.types

        limits = info.limits
        tmpfs_opts = f"uid={self.config.uid},gid={self.config.uid},exec,nosuid,nodev"
        tmpfs = {
            "/workspace": f"size={limits.disk_mb}m,mode=0700,{tmpfs_opts}",
            "/tmp": f"size={limits.tmp_mb}m,mode=1777,{tmpfs_opts}",
            # The guest daemon's own scratch space, so a full /tmp cannot stop the shell.
            "/run/sbxd": f"size=4m,mode=0700,{tmpfs_opts}",
        }
        missing = ImageNotAllowed(
            f"image {info.image!r} is not present on node {self.config.node_id}; sessions never pull"
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
        create = self.client.containers.create  # unlike containers.run, create never pulls
        try:
            container = create(
                info.image,
                detach=True,
                name=f"tsbx-{info.session_id}",
                hostname="sandbox",
                labels=_labels.labels_for(
                    instance=self.config.instance_id,
                    session_id=info.session_id,
                    owner=info.owner,
                    node=self.config.node_id,
                    pooled=pooled,
                ),
                user=f"{self.config.uid}:{self.config.uid}",
                network_mode=self._network_mode(info.network),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                read_only=True,
                tmpfs=tmpfs,
                volumes={_hostdirs.shared_dir(host_dir): {"bind": _GUEST_DIR, "mode": "rw"}},
                mem_limit=f"{limits.memory_mb}m",
                memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9),
                pids_limit=limits.pids,
                ulimits=[
                    docker.types.Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                    docker.types.Ulimit(name="core", soft=0, hard=0),
                    docker.types.Ulimit(name="fsize", soft=file_cap, hard=file_cap),
                ],
                init=True,
                ipc_mode="private",
                environment={"TOOLSERVER_SESSION": info.session_id, "TOOLSERVER_NODE": self.config.node_id},
            )
        except docker.errors.ImageNotFound:
            raise missing from None
        container.start()
        return container

    def _network_mode(self, network: str) -> str:
        """`none`, or the open network (made on first use; one with other options is refused, not used)."""
        if network == "none":
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

    def _owned_containers(self, adopt_from: set[str]) -> builtins.list[Any]:
        nodes = {self.config.node_id, *adopt_from}
        found = self.client.containers.list(
            all=True, filters=_labels.instance_filter(self.config.instance_id)
        )
        return [c for c in found if c.labels.get(_labels.NODE) in nodes]

    def _container_state(self, container_id: str) -> str:
        import docker.errors

        try:
            container = self.client.containers.get(container_id)
        except docker.errors.NotFound:
            return "container removed"
        state = container.attrs.get("State", {})
        if state.get("OOMKilled"):
            return "killed for exceeding its memory limit"
        return f"container {state.get('Status', 'unknown')}, exit code {state.get('ExitCode')}"

    def _remove_container(self, name_or_id: str) -> None:
        import docker.errors

        try:
            self.client.containers.get(name_or_id).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise
