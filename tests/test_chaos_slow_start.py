"""The harness's own slow start-up: which probes it fails, and the start gate it adds."""

from __future__ import annotations

import pytest

from harness.chaos.probe_failure import ProbeNotFailable
from harness.chaos.slow_start import GATE_CONTAINER, GATE_S, failable_probes, gate_patch


def http(path: str, port: object = "http") -> dict:
    return {"httpGet": {"path": path, "port": port}}


def test_probes_on_the_same_path_and_port_need_one_fault() -> None:
    container = {
        "name": "app",
        "ports": [{"name": "http", "containerPort": 8080}],
        "startupProbe": http("/healthz"),
        "livenessProbe": http("/healthz"),
        "readinessProbe": http("/ready"),
    }
    assert failable_probes(container) == ["startup", "readiness"]


def test_a_container_without_probes_cannot_be_slowed_and_says_why() -> None:
    with pytest.raises(ProbeNotFailable, match="container app has no probes"):
        failable_probes({"name": "app"})


def test_an_exec_probe_that_dials_nothing_is_named_in_the_reason() -> None:
    container = {"name": "app", "livenessProbe": {"exec": {"command": ["cat", "/tmp/ok"]}}}
    with pytest.raises(ProbeNotFailable) as raised:
        failable_probes(container)
    assert raised.value.message.startswith("the harness cannot slow this start-up: ")
    assert "admin.startup_delay_env" in raised.value.fix


def test_the_gate_sleeps_unprivileged_within_restricted_pod_security() -> None:
    (gate,) = gate_patch("localhost/kube-harness/busybox:1.35")["spec"]["template"]["spec"][
        "initContainers"
    ]
    assert gate["name"] == GATE_CONTAINER
    assert gate["command"] == ["sleep", str(GATE_S)]
    security = gate["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert gate["resources"]["limits"]
