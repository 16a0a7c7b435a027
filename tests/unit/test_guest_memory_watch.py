"""The guest daemon's memory watch (runsc): at the limit it kills the biggest process, never itself; it looks
more often the nearer the limit is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from sandbox._guest.sbxd_memory import MAX_INTERVAL_S, MIN_INTERVAL_S, MemoryWatch, used_bytes

MiB = 1 << 20


def _child(megabytes: int) -> subprocess.Popen[bytes]:
    code = f"import sys, time; b = bytearray({megabytes} << 20); sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def test_at_the_limit_the_biggest_process_is_killed_and_the_others_live() -> None:
    small, big = _child(8), _child(96)
    try:
        watch = MemoryWatch(
            512 * MiB, used=lambda: 512 * MiB, candidates=lambda: [small.pid, big.pid, os.getpid()]
        )
        watch.check()
        assert big.wait(5) == -signal.SIGKILL
        assert small.poll() is None
        assert [pid for pid, _, _ in watch.kills] == [big.pid]
        assert watch.kills[0][1] >= 96 * MiB
    finally:
        for proc in (small, big):
            proc.kill()
            proc.wait()


def test_the_daemon_never_kills_itself() -> None:
    watch = MemoryWatch(MiB, used=lambda: 2 * MiB, candidates=lambda: [os.getpid()])
    watch.check()
    assert watch.kills == []


def test_below_the_limit_nothing_dies_and_the_next_look_comes_sooner_near_it() -> None:
    usage = [0]
    watch = MemoryWatch(1024 * MiB, used=lambda: usage[0], candidates=lambda: [])
    assert watch.check() == MAX_INTERVAL_S
    usage[0] = 1000 * MiB
    near = watch.check()
    assert MIN_INTERVAL_S <= near < 0.02
    assert watch.kills == []


def test_the_environment_turns_the_watch_on(monkeypatch) -> None:
    monkeypatch.delenv("TOOLSERVER_MEMORY_LIMIT_MB", raising=False)
    assert MemoryWatch.from_environment() is None
    monkeypatch.setenv("TOOLSERVER_MEMORY_LIMIT_MB", "256")
    watch = MemoryWatch.from_environment()
    assert watch is not None and watch.limit == 256 * MiB


def test_usage_is_total_minus_available(tmp_path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  262144 kB\nMemFree:  1000 kB\nMemAvailable:  162144 kB\n")
    assert used_bytes(str(meminfo)) == 100000 * 1024
