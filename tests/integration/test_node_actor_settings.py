"""A real node manager on Ray holds neither the admin key nor the secrets key: not in what it was given, not in
its environment, even when the cluster was started with both in the environment."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from toolserver.config import Settings  # noqa: E402
from toolserver.nodes.ray_actors import RAY_NAMESPACE, start_node_actors, stop_node_actors  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.ray]

ADMIN = "tsk_admin-key-for-the-node-test-0123456789"
SEALING = "c2VhbGluZy1rZXktb2YtdGhlLXRlc3QtMzItYnl0ZXM="


@pytest.fixture(scope="module")
def one_node() -> Iterator[None]:
    if ray.is_initialized():
        pytest.skip("this process is already connected to another Ray instance")
    ray_tmp = tempfile.mkdtemp(prefix="rkey-", dir="/tmp")  # short: Ray puts unix sockets under it
    saved = {
        name: os.environ.get(name) for name in ("RAY_TMPDIR", "TOOLSERVER_API_KEY", "TOOLSERVER_SECRETS_KEY")
    }
    # As an operator may do: the keys in the environment the cluster starts in (its workers inherit it).
    os.environ.update(RAY_TMPDIR=ray_tmp, TOOLSERVER_API_KEY=ADMIN, TOOLSERVER_SECRETS_KEY=SEALING)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        ray.init(
            address=cluster.address,
            namespace=RAY_NAMESPACE,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        yield
    finally:
        try:
            if ray.is_initialized():
                stop_node_actors()
        finally:
            ray.shutdown()
            cluster.shutdown()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_node_manager_holds_neither_key(
    one_node: None, tmp_path: Path, docker_engine: Any, sandbox_image: str
) -> None:
    settings = Settings(home=tmp_path, pool_size=0, sandbox_image=sandbox_image)
    assert settings.api_key == ADMIN and settings.secrets_key == SEALING  # read from the environment
    reports = start_node_actors(settings, "keytest", {})
    (node_id,) = reports
    handle = ray.get_actor(f"sandbox-node-{node_id}", namespace=RAY_NAMESPACE)

    def probe(actor: Any) -> dict[str, Any]:
        import os as inner_os

        return {
            "state": repr(vars(actor)) + repr(vars(actor.config)),
            "env": {
                name: inner_os.environ.get(name) for name in ("TOOLSERVER_API_KEY", "TOOLSERVER_SECRETS_KEY")
            },
        }

    seen = ray.get(handle.__ray_call__.remote(probe), timeout=60)
    assert ADMIN not in seen["state"] and SEALING not in seen["state"]
    assert seen["env"] == {"TOOLSERVER_API_KEY": "", "TOOLSERVER_SECRETS_KEY": ""}
    assert ray.get(handle.stats.remote(), timeout=60)["node_id"] == node_id  # and it still works
