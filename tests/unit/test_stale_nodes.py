"""Which vanished nodes a starting node manager adopts (and so removes the containers of), and the outage math
of the node-loss benchmark; Ray's health-check variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench._kill_load import Call, outage
from foundation.ray_health import NODE_HEALTH_CHECKS, apply_health_check_env, health_check_env
from registry import Database, SessionStore
from sandbox import _labels
from toolserver.nodes.stale_nodes import engine_node_labels, orphaned_nodes


class _Container:
    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels


class _Containers:
    def __init__(self, found: list[_Container]) -> None:
        self._found = found

    def list(self, all: bool, filters: dict[str, list[str]]) -> list[_Container]:
        wanted = dict(item.split("=", 1) for item in filters["label"])
        return [c for c in self._found if all and all_match(c.labels, wanted)]


def all_match(labels: dict[str, str], wanted: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in wanted.items())


class _Engine:
    """A Docker client that knows only `containers.list(all=, filters=)` over fixed containers."""

    def __init__(self, *containers: tuple[str, str, str]) -> None:
        self.containers = _Containers(
            [
                _Container(
                    _labels.labels_for(instance=inst, session_id=sid, owner="", node=node, pooled=False)
                )
                for inst, node, sid in containers
            ]
        )


def _db(tmp_path: Path) -> tuple[str, Database]:
    url = f"sqlite:///{tmp_path}/registry.db"
    return url, Database(url)


def test_labels_of_the_instance_only(tmp_path: Path) -> None:
    engine: Any = _Engine(("ts1", "n1", "s1"), ("ts1", "n2", "s2"), ("other", "n3", "s3"))
    assert engine_node_labels(engine, "ts1") == {"n1", "n2"}


def test_a_vanished_node_without_live_sessions_is_adopted(tmp_path: Path) -> None:
    url, db = _db(tmp_path)
    try:
        SessionStore(db).create("team", node_id="gone", session_id="s1", status="lost")
        engine: Any = _Engine(("ts1", "gone", "s1"), ("ts1", "alive", "s2"), ("ts1", "gone", "pooled"))
        assert orphaned_nodes(engine, "ts1", url, {"alive"}) == {"gone"}
    finally:
        db.close()


def test_a_vanished_node_whose_session_the_registry_holds_live_is_left_alone(tmp_path: Path) -> None:
    url, db = _db(tmp_path)
    try:
        store = SessionStore(db)
        store.create("team", node_id="held", session_id="s1", status="running")
        store.create("team", node_id="over", session_id="s2", status="deleted")
        engine: Any = _Engine(("ts1", "held", "s1"), ("ts1", "over", "s2"))
        assert orphaned_nodes(engine, "ts1", url, set()) == {"over"}
        store.update_status("team", "s1", "lost")
        assert orphaned_nodes(engine, "ts1", url, set()) == {"held", "over"}
    finally:
        db.close()


def test_no_container_of_a_vanished_node_no_registry_read(tmp_path: Path) -> None:
    engine: Any = _Engine(("ts1", "alive", "s1"))
    assert orphaned_nodes(engine, "ts1", "sqlite:////nonexistent/dir/x.db", {"alive"}) == set()


def test_health_check_variables_leave_the_operators_alone() -> None:
    assert health_check_env()["RAY_health_check_period_ms"] == str(
        NODE_HEALTH_CHECKS["health_check_period_ms"]
    )
    environ = {"RAY_health_check_failure_threshold": "9"}
    added = apply_health_check_env(environ)
    assert environ["RAY_health_check_failure_threshold"] == "9"
    assert "RAY_health_check_failure_threshold" not in added
    assert environ["RAY_health_check_period_ms"] == "1000"


def test_outage_runs_from_the_first_bad_call_to_the_first_good_answer_after_the_last() -> None:
    calls = [
        Call("shell", 0.0, 0.1, True),
        Call("shell", 10.0, 10.1, True),  # the kill is at 10.05: this one still answered
        Call("shell", 10.6, 12.0, False),
        Call("shell", 12.5, 12.6, True),  # flaps
        Call("shell", 13.1, 20.0, True),  # held for 6.9 s: bad (slow), but its answer ends the outage
        Call("shell", 20.5, 20.6, True),
    ]
    found = outage(calls, since=10.05, until=30.0, slow_s=3.0)
    assert found["errors"] == 1 and found["slow"] == 1
    assert round(found["outage"], 2) == round(20.0 - 10.6, 2)
    assert round(found["back"], 2) == round(20.0 - 10.05, 2)
    assert outage(calls[:2], since=10.05, until=30.0, slow_s=3.0)["outage"] == 0.0
    never = outage([*calls[:2], Call("shell", 11.0, 12.0, False)], since=10.05, until=30.0, slow_s=3.0)
    assert never["outage"] is None
