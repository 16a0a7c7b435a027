"""Server-wide sandbox settings (a frozen dataclass; the trust boundary parses env into it)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

from foundation.errors import UserError, ValidationFailed
from sandbox._output import DEFAULT_OUTPUT_LIMIT
from sandbox.base import RUNTIMES, Limits, Runtime, SandboxSpec
from sandbox.egress.base import EgressLimits
from sandbox.egress.rules import EgressRule, parse_rules, within
from sandbox.errors import ImageNotAllowed, LimitsExceeded, RuntimeNotAllowed
from sandbox.processes import ProcessLimits
from sandbox.volume_paths import check_volume_paths

__all__ = ["DEFAULT_IMAGE", "SandboxConfig"]

DEFAULT_IMAGE = "toolserver-sandbox:latest"


def _default_runtime_dir() -> str:
    # Unix socket paths are capped at 107 bytes, so the per-sandbox directories live under a short path.
    return os.path.join(tempfile.gettempdir(), f"tsbx-{os.getuid()}")


@dataclass(frozen=True)
class SandboxConfig:
    """One node's sandbox settings: images, default and maximum limits, caps, the pool, TTLs, directories."""

    image: str = DEFAULT_IMAGE
    allowed_images: tuple[str, ...] = ()  # besides `image`, what sessions may name; never pulled
    default_limits: Limits = field(default_factory=Limits)
    max_limits: Limits = field(
        default_factory=lambda: Limits(
            memory_mb=8192, cpus=4.0, pids=4096, disk_mb=8192, nofile=65536, tmp_mb=1024
        )
    )
    pool_size: int = 2
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    max_file_bytes: int = 64 * 1024 * 1024
    max_code_bytes: int = 1024 * 1024
    processes: ProcessLimits = field(default_factory=ProcessLimits)  # background processes per session
    runtime_dir: str = field(default_factory=_default_runtime_dir)
    instance_id: str = "default"
    node_id: str = "local"
    uid: int = 1000
    allow_network: bool = (
        False  # whether sessions may ask for network="bridge" (TOOLSERVER_ALLOW_OPEN_NETWORK)
    )
    ready_timeout_s: float = 45.0  # a kernel on a loaded 2-core machine can take ~20 s; a wait beats a 503
    default_ttl_s: float = 3600.0
    max_ttl_s: float = 7 * 24 * 3600.0
    reap_interval_s: float = 5.0
    shared_dir_mb: int = 4  # tmpfs cap of each sandbox's /sbx (applied when the server runs as root)
    runtime: Runtime = "runc"  # the container runtime of sessions that name none (TOOLSERVER_SANDBOX_RUNTIME)
    allowed_runtimes: tuple[Runtime, ...] = ()  # besides `runtime`, what sessions may name
    egress: EgressLimits = field(default_factory=EgressLimits)  # sessions with network "egress"
    volumes_dir: str = field(default_factory=lambda: os.path.expanduser("~/.toolserver/volumes"))
    max_volume_mb: int = 10240  # the largest volume a tenant may make (TOOLSERVER_MAX_VOLUME_MB)
    # pause: idle seconds before a session pauses (0: never; TOOLSERVER_SESSION_PAUSE_AFTER_S), where paused
    # sessions keep their files, and the cap of one pause's archive (TOOLSERVER_MAX_PAUSE_ARCHIVE_MB)
    pause_after_s: float = 0.0
    paused_dir: str = field(default_factory=lambda: os.path.expanduser("~/.toolserver/paused"))
    max_pause_archive_mb: int = 1024
    # snapshots: where the node keeps them
    snapshots_dir: str = field(default_factory=lambda: os.path.expanduser("~/.toolserver/snapshots"))

    @property
    def runtimes(self) -> tuple[Runtime, ...]:
        """Every runtime a session may run under, the default first (the pool keeps sandboxes of each)."""
        return tuple(dict.fromkeys((self.runtime, *self.allowed_runtimes)))

    def runtime_of(self, spec: SandboxSpec) -> Runtime:
        """The runtime `spec` runs under: its own, else the default."""
        return spec.runtime or self.runtime

    def check_spec(self, spec: SandboxSpec) -> None:
        """Refuse images the operator did not list, limits above the server maxima, and closed-off network."""
        if spec.image not in (None, self.image, *self.allowed_images):
            raise ImageNotAllowed(
                f"image {spec.image!r} is not one this server allows"
                " (the operator lists them in TOOLSERVER_ALLOWED_IMAGES)",
                field="image",
            )
        over = spec.limits.within(self.max_limits)
        if over:
            raise LimitsExceeded(
                f"limits out of range (must be positive and at most the server maximum): {', '.join(over)}",
                field="limits." + over[0],
            )
        if spec.runtime is not None and spec.runtime not in self.runtimes:
            known = spec.runtime in RUNTIMES
            raise RuntimeNotAllowed(
                f"runtime {spec.runtime!r} is not one this server allows (allowed: {', '.join(self.runtimes)};"
                " the operator lists them in TOOLSERVER_ALLOWED_RUNTIMES)"
                if known
                else f"runtime must be one of {', '.join(RUNTIMES)}",
                field="runtime",
                setting="TOOLSERVER_ALLOWED_RUNTIMES" if known else None,
            )
        if spec.network not in ("none", "bridge", "egress"):
            raise UserError("network must be 'none', 'bridge' or {\"egress\": [...]}", field="network")
        if spec.network == "egress":
            self._check_egress(spec)
        if spec.volumes:
            check_volume_paths(spec.volumes)
        if spec.network == "bridge" and self.runtime_of(spec) == "runsc":
            raise LimitsExceeded(
                "runsc sandboxes have no open network here (the engine runs gVisor with --network=none); ask"
                " for runtime 'runc', or for an egress allow-list, which runsc sandboxes may have",
                field="network",
            )
        if spec.network == "bridge" and not self.allow_network:
            raise LimitsExceeded(
                "this server does not open the network to sandboxes (the operator may, with"
                " TOOLSERVER_ALLOW_OPEN_NETWORK)",
                field="network",
            )

    def egress_rules(self, spec: SandboxSpec) -> tuple[EgressRule, ...]:
        """The allow-list a session with network "egress" gets: its own entries, else the operator's default."""
        return parse_rules(spec.egress or self.egress.default)

    def _check_egress(self, spec: SandboxSpec) -> None:
        rules = self.egress_rules(spec)
        if not rules:
            raise ValidationFailed(
                "the egress allow-list is empty and this server has no default one"
                " (TOOLSERVER_SANDBOX_EGRESS_DEFAULT); list names, or ask for network 'none'",
                field="network.egress",
            )
        beyond = within(rules, self.egress.maximum)
        if beyond is not None:
            index = rules.index(beyond)
            raise LimitsExceeded(
                f"egress entry {str(beyond)!r} is beyond what this server lets sessions reach"
                f" (TOOLSERVER_SANDBOX_EGRESS_MAX: {', '.join(self.egress.maximum) or 'nothing'})",
                field=f"network.egress[{index}]",
                setting="TOOLSERVER_SANDBOX_EGRESS_MAX",
            )
