"""Pause, resume and fork benchmark: how long they take against the memory a session's kernel holds.

    python -m bench.pause_bench [--runtime runc|runsc|both] [--sizes 100,500] [--repeat N]

For each runtime and each size (MiB of live Python objects in the kernel: random bytes, so nothing compresses
them away) one session is made, filled, paused and resumed by a call (`x = len(blob)`), `--repeat` times; then a
snapshot of a session with a 10 MiB workspace and one fork from it. Everything runs on the local Docker engine
through the node's own `SandboxManager` (no HTTP), with this run's instance label; every container and
directory it makes is removed at the end, also on errors and Ctrl-C. Progress goes to standard error, the
table to standard output. `memory kept` says whether the pause kept the kernel's memory (a runsc checkpoint,
which needs the engine's experimental mode) or only the files, and then the resumed kernel is fresh.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from typing import Any

from bench._stats import print_table
from sandbox.base import Limits, SandboxSpec
from sandbox.config import SandboxConfig
from sandbox.manager import SandboxManager

RUN_ID = uuid.uuid4().hex[:8]


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


async def _pause_resume(manager: SandboxManager, runtime: str, mib: int, repeat: int) -> list[Any]:
    spec = SandboxSpec(owner="bench", runtime=runtime, limits=Limits(memory_mb=mib + 768, disk_mb=128))  # type: ignore[arg-type]
    info = await manager.create(spec, ttl_s=3600)
    sid = info.session_id
    fill = await manager.python(sid, f"import os\nblob = [os.urandom(1 << 20) for _ in range({mib})]", 300)
    assert fill.status == "ok", fill
    pauses, resumes, kept_memory, restored = [], [], [], []
    for _ in range(repeat):
        started = time.monotonic()
        paused = await manager.pause(sid)
        pauses.append(time.monotonic() - started)
        kept_memory.append(bool(paused["kept"].get("memory")))
        started = time.monotonic()
        answer = await manager.python(sid, "x = len(blob) if 'blob' in dir() else 0\nx", 300)
        resumes.append(time.monotonic() - started)
        restored.append(answer.result == str(mib))
        if not restored[-1]:  # a fresh kernel: fill it again, so the next pause holds the same memory
            again = await manager.python(
                sid, f"import os\nblob = [os.urandom(1 << 20) for _ in range({mib})]", 300
            )
            assert again.status == "ok", again
    await manager.destroy(sid)
    pauses.sort()
    resumes.sort()
    return [
        runtime,
        f"{mib} MiB",
        _ms(pauses[len(pauses) // 2]),
        _ms(resumes[len(resumes) // 2]),
        "yes" if all(kept_memory) else "no (files only)",
        "yes" if all(restored) else "no (fresh kernel)",
    ]


async def _fork(manager: SandboxManager, runtime: str) -> list[Any]:
    spec = SandboxSpec(owner="bench", runtime=runtime)  # type: ignore[arg-type]
    parent = (await manager.create(spec, ttl_s=3600)).session_id
    await manager.shell(parent, "head -c 10485760 /dev/urandom > /workspace/data.bin", 120)
    snapshot = f"snap_{uuid.uuid4().hex[:16]}"
    started = time.monotonic()
    made = await manager.snapshot_create(parent, snapshot)
    snap_s = time.monotonic() - started
    started = time.monotonic()
    fork = await manager.create_from_snapshot(snapshot, spec, 3600)
    fork_s = time.monotonic() - started
    check = await manager.shell(fork.session_id, "wc -c < /workspace/data.bin", 60)
    assert check.output.strip() == "10485760", check
    for sid in (parent, fork.session_id):
        await manager.destroy(sid)
    await manager.snapshot_delete(snapshot)
    return [runtime, f"{made['size_bytes'] / (1 << 20):.1f} MiB", _ms(snap_s), _ms(fork_s)]


async def _run(runtimes: list[str], sizes: list[int], repeat: int) -> None:
    work = tempfile.mkdtemp(prefix=f"tspause-{RUN_ID}-")
    config = SandboxConfig(
        pool_size=0,
        instance_id=f"bench-{RUN_ID}",
        runtime=runtimes[0],  # type: ignore[arg-type]
        allowed_runtimes=tuple(runtimes),  # type: ignore[arg-type]
        runtime_dir=f"{work}/rt",
        paused_dir=f"{work}/paused",
        snapshots_dir=f"{work}/snapshots",
        max_pause_archive_mb=256,
    )
    manager = SandboxManager(config)
    await manager.start()
    rows, forks = [], []
    try:
        for runtime in runtimes:
            for mib in sizes:
                _say(f"{runtime}: pause and resume with {mib} MiB in the kernel ...")
                rows.append(await _pause_resume(manager, runtime, mib, repeat))
            _say(f"{runtime}: snapshot and fork ...")
            forks.append(await _fork(manager, runtime))
    finally:
        await manager.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print_table(
        f"pause and resume (median of {repeat})",
        ["runtime", "kernel holds", "pause ms", "resume + first call ms", "memory kept", "kernel state back"],
        rows,
    )
    print_table("snapshot and fork", ["runtime", "snapshot size", "snapshot ms", "fork ms"], forks)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.pause_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", choices=("runc", "runsc", "both"), default="both")
    parser.add_argument(
        "--sizes", default="100,500", help="MiB of live objects in the kernel, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    runtimes = ["runc", "runsc"] if args.runtime == "both" else [args.runtime]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    try:
        asyncio.run(_run(runtimes, sizes, max(1, args.repeat)))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
