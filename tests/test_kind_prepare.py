"""`harness kind prepare`: which changes it plans for which machine, and what it writes."""

import json
import subprocess
import sys

import pytest

from harness.cluster import kind_prepare
from harness.errors import InvalidConfiguration


def test_daemon_config_keeps_what_is_there_and_selects_the_wrapper():
    current = {"log-level": "warn", "runtimes": {"other": {"path": "/bin/other"}}}
    config = kind_prepare.daemon_config_with_shim(current)
    assert config["log-level"] == "warn"
    assert config["runtimes"] == {
        "other": {"path": "/bin/other"},
        kind_prepare.SHIM_NAME: {"path": str(kind_prepare.SHIM_PATH)},
    }
    assert config["default-runtime"] == kind_prepare.SHIM_NAME
    assert kind_prepare.daemon_config_with_shim(config) == config  # nothing more to change


def test_installed_wrapper_is_the_shim_module_under_the_system_python(tmp_path):
    script = tmp_path / "shim"
    script.write_text(kind_prepare.shim_script())
    assert script.read_text().startswith("#!/usr/bin/python3 -I\n")
    # It compiles on its own: no imports from the harness.
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import ast; ast.parse(open({str(script)!r}).read())"]
    )
    assert done.returncode == 0
    assert "from harness" not in script.read_text()


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine without Docker that needs the wrapper; change it per test."""
    state = {"dockerd": None, "needs_shim": True, "answers": False, "forward": "0"}
    monkeypatch.setattr(kind_prepare.shutil, "which", lambda name: state["dockerd"])
    monkeypatch.setattr(kind_prepare, "needs_runtime_shim", lambda: state["needs_shim"])
    monkeypatch.setattr(kind_prepare, "docker_answers", lambda: state["answers"])
    monkeypatch.setattr(kind_prepare, "SHIM_PATH", tmp_path / "shim")
    monkeypatch.setattr(kind_prepare, "DAEMON_CONFIG", tmp_path / "daemon.json")
    forward = tmp_path / "ip_forward"
    monkeypatch.setattr(kind_prepare, "IP_FORWARD", forward)
    forward.write_text(state["forward"])
    return state


def whats(changes):
    """What each change does, without its paths and parentheses."""
    return [c.what.split(" (")[0].split(" /")[0].removesuffix(" in") for c in changes]


def test_a_bare_machine_gets_everything_each_with_a_reason(machine):
    changes = kind_prepare.plan()
    assert whats(changes) == [
        "install Debian's docker.io",
        "install the runc wrapper",
        "make it Docker's default runtime",
        "turn on IPv4 forwarding",
        "start the Docker daemon",
        "build kind from the Go module proxy",
        "build the kind node image offline",
    ]
    assert all(c.why for c in changes)
    assert "CAP_SYS_RESOURCE" in changes[1].why


def test_a_prepared_machine_only_reuses_its_builds(machine):
    kind_prepare.install_shim()
    kind_prepare.register_shim()
    machine.update(dockerd="/usr/sbin/dockerd", answers=True)
    assert whats(kind_prepare.plan(node_image=False)) == ["build kind from the Go module proxy"]


def test_a_machine_that_runs_privileged_containers_gets_no_wrapper(machine):
    machine.update(dockerd="/usr/sbin/dockerd", answers=True, needs_shim=False)
    assert whats(kind_prepare.plan(node_image=False)) == ["build kind from the Go module proxy"]


def test_a_new_daemon_config_restarts_a_running_docker(machine):
    kind_prepare.install_shim()
    machine.update(dockerd="/usr/sbin/dockerd", answers=True)
    assert whats(kind_prepare.plan(node_image=False)) == [
        "make it Docker's default runtime",
        "restart the Docker daemon",
        "build kind from the Go module proxy",
    ]


def test_a_broken_daemon_config_is_reported_not_overwritten(machine):
    kind_prepare.DAEMON_CONFIG.write_text("{not json")
    with pytest.raises(InvalidConfiguration, match=r"daemon\.json is not valid JSON"):
        kind_prepare.plan()
    assert kind_prepare.DAEMON_CONFIG.read_text() == "{not json"


def test_register_shim_writes_valid_json(machine):
    kind_prepare.register_shim()
    written = json.loads(kind_prepare.DAEMON_CONFIG.read_text())
    assert written["default-runtime"] == kind_prepare.SHIM_NAME
