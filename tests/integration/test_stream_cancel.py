"""`cancel_on_disconnect` for a streamed Python cell, against a real kernel over real HTTP.

The cell waits for a file and records how it ended (`outcome`). The client reads the stream until the cell has
started, then goes away. With one stream allowed per namespace, a probe stream is refused (429) until the server
has finished with the one that went away, cancel included; after that, without cancel the cell is still running
(it finishes once the file is written), with cancel it was interrupted. A follow-up cell reads `outcome`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.inprocess_app import Served, served_app

pytestmark = [pytest.mark.integration, pytest.mark.docker]

CELL = """
import os, time
outcome = "running"
try:
    print("started", flush=True)
    while not os.path.exists("/workspace/go-{tag}"):
        time.sleep(0.05)
    outcome = "finished"
except KeyboardInterrupt:
    outcome = "interrupted"
"""


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: Any, sandbox_image: str
) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("stream-cancel")
    with served_app(home, docker_engine, sandbox_image, max_streams_per_namespace=1) as app:
        yield app


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.key}"}, timeout=90)


def _start_and_go_away(served: Served, tag: str, cancel: bool) -> None:
    """Stream the cell until it printed `started`, then close the connection."""
    body = {"code": CELL.format(tag=tag), "stream": True, "cancel_on_disconnect": cancel, "timeout_s": 120}
    with (
        _client(served) as http,
        http.stream("POST", f"/v1/sessions/{served.session}/python", json=body) as r,
    ):
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data:") and "started" in line:
                return
    raise AssertionError("the stream ended before the cell started")


def _wait_until_the_stream_is_released(served: Served) -> None:
    """A probe stream gets past the namespace's one-stream cap only once the server let go of the other."""
    with _client(served) as http:
        for _ in range(600):
            probe = http.post(
                f"/v1/sessions/{served.session}/shell", json={"command": "true", "stream": True}
            )
            if probe.status_code != 429:
                assert probe.status_code == 200, probe.text
                return
            time.sleep(0.05)
        raise AssertionError("the stream of a client that went away was never released")


def _outcome(served: Served) -> Any:
    with _client(served) as http:
        cell = http.post(f"/v1/sessions/{served.session}/python", json={"code": "outcome", "timeout_s": 60})
    assert cell.status_code == 200, cell.text
    assert cell.json()["status"] == "ok", cell.json()
    return json.loads(cell.json()["result"].replace("'", '"'))


def test_a_disconnect_with_cancel_interrupts_the_cell(served: Served) -> None:
    _start_and_go_away(served, "cancelled", cancel=True)
    _wait_until_the_stream_is_released(served)
    # No go file is ever written: the cell can only have ended by the interrupt (else this call times out).
    assert _outcome(served) == "interrupted"


def test_a_disconnect_without_cancel_leaves_the_cell_running(served: Served) -> None:
    _start_and_go_away(served, "kept", cancel=False)
    _wait_until_the_stream_is_released(served)
    with _client(served) as http:
        assert http.put(f"/v1/sessions/{served.session}/files/go-kept", content=b"").status_code == 200
    assert _outcome(served) == "finished"
