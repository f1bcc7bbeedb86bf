"""The record of changes to this machine: originals kept, put back when the last owner lets go."""

import pytest

from harness import host_changes
from harness.errors import InvalidConfiguration


@pytest.fixture
def proc_sys(tmp_path, monkeypatch):
    monkeypatch.setattr(host_changes, "STATE_DIR", tmp_path / "state")
    root = tmp_path / "proc-sys"
    monkeypatch.setattr(host_changes, "PROC_SYS", root)
    (root / "net/ipv4").mkdir(parents=True)
    (root / "net/ipv4/ip_forward").write_text("0\n")
    return root


def test_a_switch_goes_back_when_its_last_owner_lets_go(proc_sys):
    switch = proc_sys / "net/ipv4/ip_forward"
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "local:a")
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "kind-prepare")
    assert switch.read_text() == "1"
    assert host_changes.release("local:a") == []
    assert switch.read_text() == "1"  # kind-prepare still needs it
    assert host_changes.release("kind-prepare") == ["net.ipv4.ip_forward back to 0"]
    assert switch.read_text() == "0"
    assert host_changes.release("kind-prepare") == []


def test_the_original_is_the_value_before_the_first_owner(proc_sys):
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "local:a")
    host_changes.hold_sysctls(["net/ipv4/ip_forward"], "local:b")  # 1: not the original
    host_changes.release("local:a")
    assert host_changes.release("local:b") == ["net.ipv4.ip_forward back to 0"]


def test_every_original_is_recorded_before_any_switch_changes(proc_sys, monkeypatch):
    (proc_sys / "net/ipv4/conf").mkdir()
    (proc_sys / "net/ipv4/conf/route_localnet").write_text("0\n")
    changes = {"net/ipv4/ip_forward": "1", "net/ipv4/conf/route_localnet": "1"}
    record_writes = []
    real_record = host_changes._record

    def counted(**kwargs):
        record_writes.append(kwargs)
        return real_record(**kwargs)

    monkeypatch.setattr(host_changes, "_record", counted)
    host_changes.set_sysctls(changes, "local:a")
    assert len(record_writes) == 1
    assert host_changes.held_by("local:a") == sorted(f"sysctl:{key}" for key in changes)
    assert sorted(host_changes.release("local:a")) == [
        "net.ipv4.conf.route_localnet back to 0",
        "net.ipv4.ip_forward back to 0",
    ]


def test_files_get_their_original_back_or_are_removed(proc_sys, tmp_path):
    config, new = tmp_path / "daemon.json", tmp_path / "wrapper"
    config.write_text("mine")
    host_changes.back_up_file(config, "kind-prepare")
    host_changes.back_up_file(new, "kind-prepare")
    config.write_text("changed")
    new.write_text("made")
    host_changes.back_up_file(config, "kind-prepare")  # again: the first original stays
    config.write_text("changed again")
    assert host_changes.held_by("kind-prepare") == [f"file:{config}", f"file:{new}"]
    done = host_changes.release("kind-prepare")
    assert config.read_text() == "mine" and not new.exists()
    assert done == [f"{config} restored", f"{new} removed (it did not exist before)"]
    assert not list((tmp_path / "state" / "host-backups").iterdir())


def test_packages_and_services_are_said(proc_sys):
    host_changes.note_package("docker.io", "kind-prepare")
    host_changes.note_service("docker", "kind-prepare")
    assert host_changes.release("kind-prepare") == [
        "docker.io stays installed: `apt-get remove docker.io` removes it if nothing uses it",
        "docker stopped (it was not running before)",
    ]


def test_a_damaged_record_is_named_and_left_alone(proc_sys, tmp_path):
    record = tmp_path / "state" / "host-changes.json"
    record.parent.mkdir(parents=True)
    record.write_text("{broken")
    with pytest.raises(InvalidConfiguration, match=r"host-changes\.json is damaged") as caught:
        host_changes.release("local:a")
    assert "by hand" in caught.value.fix
    assert record.read_text() == "{broken"


def test_one_change_that_cannot_be_put_back_keeps_its_record_and_spares_the_others(
    proc_sys, tmp_path
):
    config = tmp_path / "daemon.json"
    config.write_text("mine")
    host_changes.back_up_file(config, "kind-prepare")
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "kind-prepare")
    config.write_text("changed")
    (proc_sys / "net/ipv4/ip_forward").unlink()  # a folder in its place: root writes
    (proc_sys / "net/ipv4/ip_forward").mkdir()  # through file modes, not into a folder
    done = host_changes.release("kind-prepare")
    assert config.read_text() == "mine"
    assert any(line.startswith("could not put back sysctl:net/ipv4/ip_forward") for line in done)
    assert host_changes.held_by("kind-prepare") == ["sysctl:net/ipv4/ip_forward"]


def test_a_switch_whose_module_is_gone_is_let_go(proc_sys):
    (proc_sys / "net/bridge").mkdir(parents=True)
    (proc_sys / "net/bridge/bridge-nf-call-iptables").write_text("0")
    host_changes.set_sysctls({"net/bridge/bridge-nf-call-iptables": "1"}, "local:a")
    (proc_sys / "net/bridge/bridge-nf-call-iptables").unlink()  # br_netfilter unloaded
    assert host_changes.release("local:a") == [
        "net.bridge.bridge-nf-call-iptables is gone (its kernel module was unloaded)"
    ]
    assert host_changes.held_by("local:a") == []


def test_switches_recorded_before_a_reboot_are_forgotten(proc_sys, monkeypatch):
    monkeypatch.setattr(host_changes, "_boot", lambda: "boot-1")
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "local:a")
    monkeypatch.setattr(host_changes, "_boot", lambda: "boot-2")
    assert host_changes.release("local:a") == []  # not back to the 0 of the boot before
    assert (proc_sys / "net/ipv4/ip_forward").read_text() == "1"


def test_a_switch_already_as_it_was_is_not_said(proc_sys):
    (proc_sys / "net/ipv4/ip_forward").write_text("1")
    host_changes.set_sysctls({"net/ipv4/ip_forward": "1"}, "local:a")
    assert host_changes.release("local:a") == []
    assert host_changes.held_by("local:a") == []
