"""A sandbox that stops the tar archiving its workspace cannot hold a pause or a snapshot for ever.

The tar runs in the sandbox as its user, so the sandbox's own code can SIGSTOP it; the engine's stream then
never ends, and the node manager's thread (and the session's pause lock, and the idle reaper that pauses)
waited on it without end.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from sandbox import checkpoints
from sandbox.errors import SandboxError

pytestmark = [pytest.mark.integration, pytest.mark.docker]

_STOPS_TAR = (
    "for i in 1 2 3 4 5 6; do head -c 40000000 /dev/urandom > /tmp/f$i; done; touch /tmp/ready;"
    " while :; do pkill -STOP -x tar; sleep 0.01; done"
)


def test_an_archive_whose_tar_is_stopped_ends_at_its_deadline(
    docker_engine: Any, sandbox_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoints, "ARCHIVE_BASE_S", 2.0)
    monkeypatch.setattr(checkpoints, "ARCHIVE_MIN_BYTES_PER_S", 1 << 40)
    container = docker_engine.containers.run(
        sandbox_image,
        ["sh", "-c", _STOPS_TAR],
        entrypoint=[],
        user="1000",
        detach=True,
        network_mode="none",
        labels={"toolserver.test": "archive-deadline"},
        name=f"ts-archive-deadline-{uuid.uuid4().hex[:8]}",
    )
    try:
        while container.exec_run(["test", "-e", "/tmp/ready"]).exit_code != 0:
            time.sleep(0.5)
        outcome: dict[str, BaseException | int] = {}

        def archive() -> None:
            try:
                outcome["size"] = checkpoints.archive_workspace(
                    docker_engine, container.id, str(tmp_path / "ws.tar"), (), 1 << 30
                )
            except BaseException as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=archive, daemon=True)
        worker.start()
        worker.join(60)  # the stream would never end: the deadline ends it
        assert not worker.is_alive(), "the archive still waits on the stopped tar"
        assert isinstance(outcome.get("error"), SandboxError), outcome
        assert "took too long" in str(outcome["error"])
        assert not os.listdir(tmp_path)  # no partial archive left behind
    finally:
        container.remove(force=True)
