"""Which ingress `toolserver up` uses: HAProxy when asked for, on ports of its own; Serve's proxy otherwise."""

from __future__ import annotations

import contextlib
import socket

import pytest

from toolserver.cli import build_parser
from toolserver.serve import ingress


@pytest.mark.parametrize(
    ("setting", "joined", "replicas", "direct", "kind"),
    [
        (None, False, None, True, "direct"),  # one machine, one replica: it serves the port itself
        (None, False, 1, True, "direct"),
        (None, False, 2, True, "serve"),  # two replicas need a proxy in front
        (None, False, None, False, "serve"),
        (True, False, None, True, "haproxy"),  # asked for (not the default: its stats bind every interface)
        (False, False, None, True, "direct"),
        (None, True, None, True, "serve"),  # a joined cluster: its `ray start` decides
        (True, True, None, True, "serve"),
    ],
)
def test_ingress_kind(
    setting: bool | None, joined: bool, replicas: int | None, direct: bool, kind: str
) -> None:
    assert ingress.ingress_kind(setting, joined, replicas, direct) == kind


def test_the_direct_ingress_takes_exactly_the_servers_port() -> None:
    env = ingress.direct_env(8123)
    # Serve allocates from range(min, max): the one port.
    ports = range(
        int(env["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"]), int(env["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"])
    )
    assert list(ports) == [8123]
    # Only the ingress replica turns it on: no other application (a deployment tool) gets a port of its own.
    assert "RAY_SERVE_ENABLE_DIRECT_INGRESS" not in env
    assert ingress.direct_env(8123, replica=True)["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"


def test_a_busy_port_is_a_clear_error_before_ray_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Exception, match=f"Failed to bind 127.0.0.1:{port}.*choose another --port"):
            ingress.check_port_free("127.0.0.1", port, wait_s=0.5)


def test_two_servers_get_haproxy_listeners_of_their_own(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(ingress, "haproxy_binary", lambda: "/usr/sbin/haproxy")
    names = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT")
    one = ingress.haproxy_env(tmp_path / "a")
    first = [int(one[name]) for name in names]
    with contextlib.ExitStack() as running:  # the first server's HAProxy listens on its ports
        for port in first:
            listener = running.enter_context(socket.socket())
            listener.bind(("0.0.0.0", port))
            listener.listen()
        two = ingress.haproxy_env(tmp_path / "b")
    ports = set(first) | {int(two[name]) for name in names}
    assert len(ports) == 4 and not ports & {8404, 9101}
    assert one["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] != two["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]


def test_one_servers_haproxy_listeners_never_share_a_port() -> None:
    for _ in range(200):
        stats, metrics = ingress.free_ports(2)
        assert stats != metrics


def test_asking_for_haproxy_without_it_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(ingress, "haproxy_binary", lambda: None)
    with pytest.raises(Exception, match="apt-get install haproxy"):
        ingress.haproxy_env(tmp_path)


@pytest.mark.parametrize(
    ("argv", "value"), [([], None), (["--fast-ingress"], True), (["--no-fast-ingress"], False)]
)
def test_up_takes_fast_ingress_both_ways(argv: list[str], value: bool | None) -> None:
    args = build_parser().parse_args(["up", *argv])
    assert args.fast_ingress is value
