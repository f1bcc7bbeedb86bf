"""Which packets fail a probe from outside the container (harness.chaos.probe_failure)."""

from __future__ import annotations

from typing import Any

import pytest

from harness.chaos.probe_failure import ProbeNotFailable, probe_block

GET_HEALTHZ = "|" + b"GET /healthz ".hex() + "|"


def container(**probes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "web",
        "ports": [{"name": "http", "containerPort": 8080}],
        **{f"{kind}Probe": spec for kind, spec in probes.items()},
    }


def test_http_get_drops_only_the_probes_request_line_on_its_port() -> None:
    block = probe_block(container(readiness={"httpGet": {"path": "/healthz", "port": "http"}}),
                        "readiness")  # fmt: skip
    assert block.rules == (
        f"INPUT -p tcp --dport 8080 -m string --algo bm --hex-string {GET_HEALTHZ}",
    )
    assert block.what == "GET /healthz on port 8080"
    assert block.side_effect is None
    assert " " not in block.rules[0].split("--hex-string ")[1]  # one shell word


def test_http_get_without_a_path_probes_the_root() -> None:
    block = probe_block(container(liveness={"httpGet": {"port": 9000}}), "liveness")
    assert block.what == "GET / on port 9000"


@pytest.mark.parametrize("kind", ["tcpSocket", "grpc"])
def test_socket_probes_drop_new_connections_and_say_the_load_suffers(kind: str) -> None:
    block = probe_block(container(liveness={kind: {"port": 8080}}), "liveness")
    assert block.rules == ("INPUT -p tcp --dport 8080 --syn",)
    assert "new connections of the load" in (block.side_effect or "")


@pytest.mark.parametrize(
    ("command", "rule"),
    [
        (
            ["podcli", "check", "http", "localhost:9898/healthz"],
            "INPUT -i lo -p tcp --dport 9898 -m string --algo bm --hex-string "
            + "|"
            + b"GET /healthz ".hex()
            + "|",
        ),
        (
            ["sh", "-c", "wget -qO- http://127.0.0.1:8080/healthz || exit 1"],
            "INPUT -i lo -p tcp --dport 8080 -m string --algo bm --hex-string "
            + "|"
            + b"GET /healthz ".hex()
            + "|",
        ),
        (["grpc_health_probe", "-addr=:5000"], "INPUT -i lo -p tcp --dport 5000 --syn"),
        (["nc", "-z", "localhost", "6379"], "INPUT -i lo -p tcp --dport 6379 --syn"),
    ],
)
def test_exec_probes_that_dial_the_pod_are_failed_on_loopback_only(command, rule) -> None:
    block = probe_block(container(readiness={"exec": {"command": command}}), "readiness")
    assert block.rules == (rule,)
    assert "from inside the pod" in block.what


@pytest.mark.parametrize(
    "command",
    [["cat", "/tmp/healthy"], ["curl", "http://db:5432/x"], ["redis-cli", "-p", "6379", "ping"]],
)
def test_exec_probes_that_dial_nothing_recognisable_say_why(command) -> None:
    with pytest.raises(ProbeNotFailable, match="dials no port of the pod") as caught:
        probe_block(container(readiness={"exec": {"command": command}}), "readiness")
    assert "admin:" in (caught.value.fix or "")


def test_a_missing_probe_or_port_is_named() -> None:
    with pytest.raises(ProbeNotFailable, match="container web has no startup probe"):
        probe_block(container(), "startup")
    with pytest.raises(ProbeNotFailable, match="names port 'metrics'"):
        probe_block(container(readiness={"httpGet": {"port": "metrics"}}), "readiness")
