"""The SDK's documented examples (docs/sdk.md and the README) run as written against a real server and sandboxes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serverproc import ServerProcess
from toolserver import Client

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"```python\n(.*?)```", re.S)


def _examples(path: Path) -> list[str]:
    return [block for block in FENCE.findall(path.read_text()) if "toolserver import" in block]


DOCS = _examples(ROOT / "docs" / "sdk.md")
README = _examples(ROOT / "README.md")


@pytest.fixture(scope="module")
def server(tmp_path_factory, sandbox_image):
    proc = ServerProcess(tmp_path_factory.mktemp("tshome-sdk"), env={"TOOLSERVER_POOL_SIZE": "1"})
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def tenant_env(server):
    with Client(server.url, server.admin_key) as admin:
        key = admin.keys.create("sdk-docs", "docs").key
    return {**os.environ, "TOOLSERVER_URL": server.url, "TOOLSERVER_API_KEY": key}


def test_the_docs_have_examples():
    assert len(DOCS) >= 6 and len(README) >= 1


@pytest.mark.parametrize(
    "source",
    DOCS + README,
    ids=[f"docs-{i}" for i in range(len(DOCS))] + [f"readme-{i}" for i in range(len(README))],
)
def test_an_example_runs_as_written(source, tenant_env, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=tenant_env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
