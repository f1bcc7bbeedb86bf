"""`harness kind prepare`: which changes it plans for which machine, and what it writes."""

import json
import subprocess
import sys

import pytest

from harness import host_changes
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
    """A machine without Docker that needs the wrapper; change it per test. Docker's
    daemon is a flag here: started, stopped and restarted by the fakes."""
    state = {"dockerd": None, "needs_shim": True, "answers": False, "runtime": "runc"}
    monkeypatch.setattr(host_changes, "STATE_DIR", tmp_path / "state")
    monkeypatch.setattr(kind_prepare.shutil, "which", lambda name: state["dockerd"])
    monkeypatch.setattr(kind_prepare, "needs_runtime_shim", lambda: state["needs_shim"])
    monkeypatch.setattr(kind_prepare, "docker_answers", lambda: state["answers"])
    monkeypatch.setattr(kind_prepare, "docker_default_runtime", lambda: state["runtime"])
    monkeypatch.setattr(kind_prepare, "SHIM_PATH", tmp_path / "shim")
    monkeypatch.setattr(kind_prepare, "DAEMON_CONFIG", tmp_path / "daemon.json")
    monkeypatch.setattr(host_changes, "PROC_SYS", tmp_path / "proc-sys")
    forward = tmp_path / "proc-sys" / kind_prepare.IP_FORWARD
    forward.parent.mkdir(parents=True)
    forward.write_text("0")
    state["forward"] = forward
    state["restarts"] = 0

    def launch(*, restart):
        state["answers"] = True
        state["restarts"] += restart
        forward.write_text("1")  # as Docker does

    monkeypatch.setattr(kind_prepare, "_launch_dockerd", launch)
    monkeypatch.setattr(kind_prepare, "stop_docker", lambda: state.update(answers=False))
    monkeypatch.setattr(
        kind_prepare, "apt_install", lambda package: state.update(dockerd="/usr/sbin/dockerd")
    )
    monkeypatch.setattr(kind_prepare, "_need_root", lambda command: None)
    monkeypatch.setattr(kind_prepare, "docker_containers", lambda: state.get("containers", []))
    monkeypatch.setattr(kind_prepare, "DOCKERD_FLAG_FILES", (tmp_path / "default-docker",))
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


def apply(changes):
    for change in changes:
        if not change.what.startswith("build"):
            change.apply()


def test_unprepare_puts_back_what_prepare_changed(machine):
    original = '{"log-level": "warn"}\n'
    kind_prepare.DAEMON_CONFIG.write_text(original)
    apply(kind_prepare.plan())
    assert (
        json.loads(kind_prepare.DAEMON_CONFIG.read_text())["default-runtime"] == "kube-harness-runc"
    )
    assert kind_prepare.SHIM_PATH.is_file() and machine["answers"]
    assert machine["forward"].read_text() == "1"

    done = kind_prepare.unprepare()

    assert kind_prepare.DAEMON_CONFIG.read_text() == original
    assert not kind_prepare.SHIM_PATH.exists()
    assert not machine["answers"]  # the daemon it started is stopped
    assert machine["forward"].read_text() == "0"
    assert any("docker.io stays installed" in line for line in done)
    assert kind_prepare.held() == []


def test_unprepare_restarts_a_docker_that_ran_before_to_read_its_own_config(machine):
    machine.update(dockerd="/usr/sbin/dockerd", answers=True)
    machine["forward"].write_text("1")  # Docker runs: forwarding is on already
    apply(kind_prepare.plan())
    assert machine["restarts"] == 1
    kind_prepare.unprepare()
    assert not kind_prepare.DAEMON_CONFIG.exists()  # there was none
    assert machine["answers"] and machine["restarts"] == 2
    assert machine["forward"].read_text() == "1"


def test_a_default_runtime_someone_chose_is_replaced_only_when_asked(machine):
    kind_prepare.DAEMON_CONFIG.write_text('{"default-runtime": "runsc"}')
    with pytest.raises(InvalidConfiguration) as refused:
        kind_prepare.plan()
    assert "Docker's default runtime is 'runsc'" in refused.value.message
    assert "--replace-default-runtime" in refused.value.fix
    assert kind_prepare.DAEMON_CONFIG.read_text() == '{"default-runtime": "runsc"}'
    apply(kind_prepare.plan(replace_default_runtime=True))
    kind_prepare.unprepare()
    assert kind_prepare.DAEMON_CONFIG.read_text() == '{"default-runtime": "runsc"}'


def test_a_default_runtime_given_to_dockerd_by_flag_counts_too(machine):
    machine.update(dockerd="/usr/sbin/dockerd", answers=True, runtime="crun")
    with pytest.raises(InvalidConfiguration, match="default runtime is 'crun'"):
        kind_prepare.plan()


def test_unprepare_refuses_to_restart_docker_under_its_containers(machine):
    machine.update(dockerd="/usr/sbin/dockerd", answers=True)
    apply(kind_prepare.plan())
    machine["containers"] = ["kh-one-control-plane", "registry"]
    with pytest.raises(InvalidConfiguration) as refused:
        kind_prepare.unprepare()
    assert "Docker holds 2 container(s) (kh-one-control-plane, registry)" in refused.value.message
    assert "restarts Docker" in refused.value.message and "--force" in refused.value.fix
    assert kind_prepare.held()  # nothing put back
    kind_prepare.unprepare(force=True)
    assert kind_prepare.held() == [] and machine["restarts"] == 2


def test_a_default_runtime_in_dockerds_flags_counts_while_docker_is_stopped(machine, tmp_path):
    (tmp_path / "default-docker").write_text('DOCKER_OPTS="--default-runtime=runsc"\n')
    with pytest.raises(InvalidConfiguration, match="default runtime is 'runsc', set by a dock"):
        kind_prepare.plan()
    # dockerd refuses a default runtime in both its flags and daemon.json: no way round it
    with pytest.raises(InvalidConfiguration, match="remove that --default-runtime flag"):
        kind_prepare.plan(replace_default_runtime=True)
