"""Each server process gets only what it uses: node managers and the node watcher neither key, the scheduler and
the ingress replicas the secrets key but never the admin key (checked on what is handed over, pickled)."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from pathlib import Path

from sandbox.config import SandboxConfig
from toolserver.config import Settings
from toolserver.nodes.ray_actors import SandboxNodeActor, node_actor_args
from toolserver.runs.ray_actor import scheduler_settings
from toolserver.serve.app import _settings_env
from toolserver.serve.builder import watcher_settings

ADMIN = "tsk_admin-key-for-the-test-0123456789"
SEALING = "c2VhbGluZy1rZXktb2YtdGhlLXRlc3QtMzItYnl0ZXM="


def _settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, api_key=ADMIN, secrets_key=SEALING, pool_size=0, max_pids=512)


def test_a_node_manager_gets_its_sandbox_config_and_the_registry_url_only(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    args = node_actor_args(settings, "ts-test")
    handed = pickle.dumps(args)
    assert ADMIN.encode() not in handed and SEALING.encode() not in handed
    # Ray adds `_ray_trace_ctx` to a class's methods once it has made an actor class of it in this process.
    parameters = [
        p for p in inspect.signature(SandboxNodeActor.__init__).parameters if not p.startswith("_ray")
    ]
    assert parameters == ["self", "sandbox", "database"]
    fields, database = args
    assert database == settings.database
    rebuilt = SandboxConfig(**fields, node_id="n1")
    expected = settings.sandbox_config(instance_id="ts-test", node_id="n1")
    assert dataclasses.replace(rebuilt, runtime_dir=expected.runtime_dir) == expected


def test_the_watcher_gets_neither_key_and_the_scheduler_no_admin_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    watcher = pickle.dumps(watcher_settings(settings))
    assert ADMIN.encode() not in watcher and SEALING.encode() not in watcher
    scheduler = scheduler_settings(settings)
    assert scheduler.api_key is None and scheduler.secrets_key == SEALING  # runs call tools with secrets
    assert ADMIN.encode() not in pickle.dumps(scheduler)


def test_replicas_get_the_secrets_key_and_a_blank_admin_key(tmp_path: Path) -> None:
    env = _settings_env(_settings(tmp_path))
    assert env["TOOLSERVER_API_KEY"] == ""  # blank, not inherited from where the cluster was started
    assert ADMIN not in env.values()
    assert env["TOOLSERVER_SECRETS_KEY"] == SEALING
    assert env["TOOLSERVER_MAX_PIDS"] == "512"
