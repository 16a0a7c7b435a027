"""Docker backend: one hardened container per session, reached through its private directory.

The container runs the guest daemon (persistent bash, file access, kernel supervision) and an
IPython kernel. The host talks to both over unix sockets in a bind-mounted directory, so the
container needs no network at all.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import time
from dataclasses import replace
from typing import Any

from foundation.errors import UserError
from sandbox import _hostdirs, _labels
from sandbox._container import GUEST_DIR, OPEN_NETWORK, ContainerEngine, container_name, private_dir
from sandbox._docker_pause import DockerPause  # pause: the mixin
from sandbox._docker_volumes import DockerVolumes
from sandbox._guest_client import GuestClient
from sandbox._guest_processes import GuestProcesses
from sandbox._ids import new_session_id
from sandbox._inputs import check_code_size, checked_timeout
from sandbox._kernel import KernelConnection, message_cap, write_connection_files
from sandbox._kernel_cell import OutputSink
from sandbox._meta import info_from_container, write_meta
from sandbox._paths import workspace_relative
from sandbox._runtime_dir import prepare_runtime_dir
from sandbox._sandbox_restore import RestorableSandbox
from sandbox.base import (
    FileEntry,
    PythonResult,
    Sandbox,
    SandboxBackend,
    SandboxInfo,
    SandboxSpec,
    ShellResult,
)
from sandbox.config import SandboxConfig
from sandbox.egress.base import AddressCheck
from sandbox.egress.gate import DeniedCallback, EgressGate
from sandbox.errors import SandboxGone, SandboxNotFound, SandboxUnavailable
from sandbox.volumes import VolumeHost

__all__ = ["OPEN_NETWORK", "DockerBackend", "DockerSandbox", "engine_runtimes"]

log = logging.getLogger(__name__)


class DockerSandbox(Sandbox, RestorableSandbox):
    """A live container plus host-side connections to its guest daemon and kernel."""

    def __init__(self, info: SandboxInfo, host_dir: str, config: SandboxConfig) -> None:
        self._info = info
        self.host_dir = host_dir  # the private directory; the container sees only its `sbx` child
        self._config = config
        self._guest = GuestClient(_hostdirs.guest_socket(host_dir))
        self.processes = GuestProcesses(self._guest, config.processes)
        self._kernel: KernelConnection | None = None
        self._kernel_lock = asyncio.Lock()
        self._kernel_dead = False
        self.last_used = time.time()

    @property
    def info(self) -> SandboxInfo:
        return self._info

    @property
    def guest_socket(self) -> str:
        """The host path of the guest daemon's socket (what a port proxy on this node connects to)."""
        return self._guest.socket_path

    def set_owner(self, owner: str) -> None:
        """Hand a pooled sandbox to its tenant (labels are immutable; the directory records it)."""
        self._info = replace(self._info, owner=owner)
        write_meta(self.host_dir, self._info)

    async def connect(self) -> None:
        """Wait for the guest daemon and the kernel to answer; from then on the sandbox can write nothing in /sbx."""
        await self._guest.wait_ready(self._config.ready_timeout_s)
        await asyncio.to_thread(_hostdirs.freeze_guest_dir, self.host_dir)
        await self._ensure_kernel()

    async def ping(self) -> dict[str, Any]:
        """The guest daemon's answer to a ping; SandboxUnavailable (or SandboxGone) when it does not answer."""
        return await self._guest.ping()

    async def shell(self, command: str, timeout_s: float = 30.0) -> ShellResult:
        check_code_size(command, "command", self._config.max_code_bytes)
        timeout_s = checked_timeout(timeout_s)
        self.last_used = time.time()
        return await self._guest.shell(command, timeout_s, self._config.output_limit)

    async def shell_streaming(self, command: str, timeout_s: float, on_output: OutputSink) -> ShellResult:
        """`shell`, with its output's text given to `on_output("stdout", text)` as it comes."""
        check_code_size(command, "command", self._config.max_code_bytes)
        timeout_s = checked_timeout(timeout_s)
        self.last_used = time.time()
        return await self._guest.shell_stream(
            command, timeout_s, lambda text: on_output("stdout", text), self._config.output_limit
        )

    async def python_streaming(self, code: str, timeout_s: float, on_output: OutputSink) -> PythonResult:
        """`python`, with stream text and displays given to `on_output` as they come."""
        return await self._python(code, timeout_s, on_output)

    async def interrupt(self, kind: str) -> None:
        """Interrupt what the shell (`kind` "shell") or the kernel ("python") runs now."""
        if kind == "shell":
            await self._guest.shell_interrupt()
        else:
            await self._interrupt_kernel()

    async def python(self, code: str, timeout_s: float = 30.0) -> PythonResult:
        return await self._python(code, timeout_s, None)

    async def _python(self, code: str, timeout_s: float, on_output: OutputSink | None) -> PythonResult:
        check_code_size(code, "code", self._config.max_code_bytes)
        timeout_s = checked_timeout(timeout_s)
        self.last_used = time.time()
        async with self._kernel_lock:
            kernel = await self._ensure_kernel()
            result = await kernel.execute(
                code,
                timeout_s,
                interrupt=self._interrupt_kernel,
                is_alive=self._kernel_alive,
                output_limit=self._config.output_limit,
                on_output=on_output,
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

    async def _ensure_kernel(self) -> KernelConnection:
        if self._kernel is not None and self._kernel.breach is not None:
            self._kernel_dead = True  # it broke the caps between two calls
        if self._kernel_dead or not await self._kernel_alive():
            await self._restart_kernel()
        if self._kernel is None:
            self._kernel = await self._connect_kernel()
        return self._kernel

    async def _restart_kernel(self) -> None:
        if self._kernel is not None:
            await self._kernel.close()
            self._kernel = None
        await self._guest.kernel("kernel_restart")
        self._kernel_dead = False
        self._kernel = await self._connect_kernel()

    async def _connect_kernel(self) -> KernelConnection:
        host_file = os.path.join(self.host_dir, "kernel.host.json")
        return await KernelConnection.connect(host_file, self._config.ready_timeout_s)

    async def _interrupt_kernel(self) -> None:
        await self._guest.kernel("kernel_interrupt")

    async def _kernel_alive(self) -> bool:
        status = await self._guest.kernel("kernel_status")
        return bool(status.get("alive"))


def engine_runtimes(client: Any = None) -> tuple[str, ...]:
    """The container runtimes the local Docker engine has registered (SandboxUnavailable when it does not answer)."""
    return ContainerEngine(SandboxConfig(), client).runtimes()


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


class DockerBackend(SandboxBackend, DockerVolumes, DockerPause):
    """Creates and tracks hardened session containers on the local Docker engine."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        client: Any = None,
        *,
        egress_check: AddressCheck | None = None,
        on_egress_denied: DeniedCallback | None = None,
    ) -> None:
        """`egress_check` pins where sessions with network "egress" may connect (without one they are refused)."""
        config = config or SandboxConfig()
        prepare_runtime_dir(config.runtime_dir)
        self.config = _with_sandbox_uid(config)
        self.engine = ContainerEngine(self.config, client)
        self.egress = EgressGate(self.config.egress, egress_check, on_egress_denied)
        self.volumes = VolumeHost(self.config.volumes_dir, self.config.uid)
        self._sandboxes: dict[str, DockerSandbox] = {}
        # Unix socket paths are short (107 bytes), so the node part of the directory is abbreviated.
        self._root = os.path.join(self.config.runtime_dir, self.config.instance_id, self.config.node_id[:12])

    @property
    def client(self) -> Any:
        """The Docker client; SandboxUnavailable when the engine does not answer."""
        return self.engine.client

    async def create(
        self, spec: SandboxSpec, session_id: str | None = None, *, pooled: bool = False
    ) -> DockerSandbox:
        """A new container for `spec`, connected and ready; `pooled` labels one started ahead for the pool."""
        self.config.check_spec(spec)
        session_id = session_id or new_session_id()
        host_dir = await asyncio.to_thread(
            _hostdirs.make_dirs, self._root, session_id, self.config.shared_dir_mb
        )
        info = SandboxInfo(
            session_id=session_id,
            container_id="",
            owner=spec.owner,
            image=spec.image or self.config.image,
            node_id=self.config.node_id,
            network=spec.network,
            limits=spec.limits,
            created_at=time.time(),
            runtime=self.config.runtime_of(spec),
            egress=tuple(str(r) for r in self.config.egress_rules(spec)) if spec.network == "egress" else (),
            volumes=spec.volumes,
        )
        if info.network == "egress":
            self.egress.require()
        try:
            write_connection_files(
                _hostdirs.shared_dir(host_dir),
                GUEST_DIR,
                private_dir=host_dir,
                max_message=message_cap(self.config.output_limit),
            )
            write_meta(host_dir, info)
            if info.network == "egress":
                await self.egress.open(info, _hostdirs.shared_dir(host_dir))
            binds = self.volume_binds(session_id, spec.volumes)
            container = await asyncio.to_thread(self.engine.run, info, host_dir, pooled, binds)
            info = replace(info, container_id=container.id)
            sandbox = DockerSandbox(info, host_dir, self.config)
            await sandbox.connect()
        except BaseException:
            self.release_volumes(session_id)
            await self.egress.close(session_id)
            await self._remove(container_name(session_id), host_dir)
            raise
        self._sandboxes[session_id] = sandbox
        self.release_volumes(session_id)  # the sandbox holds its mounts now
        return sandbox

    async def get(self, session_id: str) -> DockerSandbox:
        """The session's connected sandbox; SandboxNotFound when this backend holds none."""
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
            state = await asyncio.to_thread(self.engine.state, sandbox.info.container_id)
            raise SandboxGone(
                f"the sandbox of session {session_id} is gone ({state})", session_id=session_id
            ) from None

    async def destroy(self, session_id: str) -> None:
        """Remove the session's container and directories (a no-op when they are gone)."""
        sandbox = self._sandboxes.pop(session_id, None)
        await self.egress.close(session_id)
        host_dir = os.path.join(self._root, session_id)
        if sandbox is not None:
            host_dir = sandbox.host_dir
            await sandbox.close()
        await self._remove(container_name(session_id), host_dir)

    async def list(self) -> builtins.list[SandboxInfo]:
        """The sandboxes this backend holds."""
        return [s.info for s in self._sandboxes.values()]

    async def close(self) -> None:
        """Remove every container and directory of this node (and the node's directory when it is empty)."""
        for session_id in list(self._sandboxes):
            await self.destroy(session_id)
        for container in await asyncio.to_thread(self.engine.owned, set()):
            await asyncio.to_thread(self.engine.remove, container.id)
        self._paused_types().clear()  # their stopped containers went too: a resume restores the files
        await asyncio.to_thread(self._remove_stray_dirs)
        for path in (self._root, os.path.dirname(self._root)):
            try:
                os.rmdir(path)  # only when empty: other nodes of the instance may share the parent
            except OSError:
                pass

    async def reconcile(
        self,
        live_session_ids: set[str],
        adopt_from: set[str] | None = None,
        checkpointed: set[str] | None = None,
    ) -> dict[str, builtins.list[str]]:
        """Re-attach containers of live sessions; remove every other container this manager owns.

        `adopt_from` names nodes that no longer exist (a restarted single-node server gets a new Ray
        node id): their containers on this engine are treated as this node's own. The stopped containers
        of the `checkpointed` paused sessions are kept, with their directories, to be restored on resume.
        """
        await asyncio.to_thread(self.volumes.attach_all)  # volumes outlive the node: mount them again first
        attached: builtins.list[str] = []
        removed: builtins.list[str] = []
        for container in await asyncio.to_thread(self.engine.owned, adopt_from or set()):
            session_id = container.labels.get(_labels.SESSION, "")
            running = container.status == "running"
            if session_id in (checkpointed or ()) and not running:
                kept = private_dir(container) or os.path.join(self._root, session_id)
                self._paused_types()[session_id] = DockerSandbox, kept
                continue
            if session_id in live_session_ids and running and session_id not in self._sandboxes:
                try:
                    await self._attach(container, session_id)
                    attached.append(session_id)
                    continue
                except Exception:
                    await self.egress.close(session_id)  # a proxy the failed attach opened
            if session_id in self._sandboxes:
                continue
            await self._remove(container.id, private_dir(container) or os.path.join(self._root, session_id))
            removed.append(session_id)
        await asyncio.to_thread(self._remove_stray_dirs)
        return {"attached": attached, "removed": removed}

    async def _attach(self, container: Any, session_id: str) -> None:
        host_dir = private_dir(container) or os.path.join(self._root, session_id)
        info = info_from_container(
            container, session_id, host_dir, node_id=self.config.node_id, default_image=self.config.image
        )
        if info.network == "egress":
            await self.egress.open(info, _hostdirs.shared_dir(host_dir))
        sandbox = DockerSandbox(info, host_dir, self.config)
        await sandbox.connect()
        self._sandboxes[session_id] = sandbox

    def egress_report(self, session_id: str) -> dict[str, Any]:
        """What the session's egress proxy let through and refused."""
        return self.egress.report(session_id)

    def egress_totals(self) -> dict[str, int]:
        """Connections this node's egress proxies allowed and denied since it started."""
        return self.egress.totals()

    async def _remove(self, container: str, host_dir: str) -> None:
        """Remove a container (by name or id), then its private directories."""
        await asyncio.to_thread(self.engine.remove, container)
        await asyncio.to_thread(_hostdirs.remove_dirs, host_dir)

    def _remove_stray_dirs(self) -> None:
        if not os.path.isdir(self._root):
            return
        for name in os.listdir(self._root):
            if name not in self._sandboxes and name not in self._paused_types():
                _hostdirs.remove_dirs(os.path.join(self._root, name))
