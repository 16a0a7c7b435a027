"""A replica's memory of sessions: verified records expire and are bounded; uses are written, but not every call."""

from __future__ import annotations

import asyncio
import time

import pytest

from toolserver.service.session_cache import UseRecorder, VerifiedSessions


def test_a_verified_record_is_kept_for_its_ttl_then_read_again():
    cache = VerifiedSessions(ttl_s=0.05)
    cache.put("team-a", "ses_1", "record")
    assert cache.get("team-a", "ses_1") == "record"
    assert cache.get("team-b", "ses_1") is None  # keyed by namespace: another tenant never hits it
    time.sleep(0.06)
    assert cache.get("team-a", "ses_1") is None and len(cache) == 0


def test_the_memory_is_bounded_and_forgets_the_oldest_first():
    cache = VerifiedSessions(ttl_s=60, max_entries=3)
    for i in range(5):
        cache.put("ns", f"ses_{i}", i)
    assert len(cache) == 3 and cache.get("ns", "ses_0") is None and cache.get("ns", "ses_4") == 4
    cache.forget("ns", "ses_4")
    assert cache.get("ns", "ses_4") is None


async def test_uses_are_written_in_the_background_at_most_once_per_interval():
    writes: list[tuple[str, str]] = []
    recorder = UseRecorder(lambda ns, sid: writes.append((ns, sid)), every_s=0.2)
    for _ in range(50):
        recorder.used("ns", "ses_1")
    recorder.used("ns", "ses_2")
    await recorder.drain()
    assert writes == [("ns", "ses_1"), ("ns", "ses_2")]
    await asyncio.sleep(0.21)
    recorder.used("ns", "ses_1")
    await recorder.drain()
    assert writes[-1] == ("ns", "ses_1") and len(writes) == 3


async def test_a_failed_write_is_tried_again_on_the_next_use():
    calls = []

    def flaky(ns: str, sid: str) -> None:
        calls.append(sid)
        if len(calls) == 1:
            raise RuntimeError("database is locked")

    recorder = UseRecorder(flaky, every_s=60)
    recorder.used("ns", "ses_1")
    await recorder.drain()
    recorder.used("ns", "ses_1")
    await recorder.drain()
    assert calls == ["ses_1", "ses_1"]


@pytest.mark.parametrize("entries", [1, 2])
async def test_the_recorder_is_bounded(entries):
    recorder = UseRecorder(lambda ns, sid: None, every_s=60, max_entries=entries)
    for i in range(10):
        recorder.used("ns", f"ses_{i}")
    await recorder.drain()
    assert len(recorder._written) == entries
