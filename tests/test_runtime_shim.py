"""The runc wrapper: which file it edits for which runc command line, and what it changes."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cluster import runtime_shim
from harness.cluster.runtime_shim import file_to_relax, relax_process, subcommand

ALL_CAPS = ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SYS_RESOURCE", "CAP_NET_ADMIN"]


def privileged_process(oom_score_adj: int = -998) -> dict:
    sets = ("bounding", "effective", "inheritable", "permitted", "ambient")
    return {
        "args": ["/sbin/init"],
        "capabilities": {name: list(ALL_CAPS) for name in sets},
        "oomScoreAdj": oom_score_adj,
    }


def test_relaxing_drops_only_cap_sys_resource_from_every_set():
    process = relax_process(privileged_process())
    for caps in process["capabilities"].values():
        assert caps == ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert process["args"] == ["/sbin/init"]


@pytest.mark.parametrize(("given", "kept"), [(-998, 0), (0, 0), (500, 500)])
def test_only_a_negative_oom_score_adj_is_raised(given, kept):
    assert relax_process(privileged_process(given))["oomScoreAdj"] == kept


def test_a_process_without_capabilities_or_oom_score_stays_as_it_is():
    assert relax_process({"args": ["sh"]}) == {"args": ["sh"]}


# Command lines as containerd's runc shim and Docker give them.
ROOT = ["--root", "/var/run/docker/runtime-runc/moby", "--log", "/run/x/log.json"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [*ROOT, "--log-format", "json", "create", "--bundle", "/b", "id"],
            ("/b/config.json", True),
        ),
        ([*ROOT, "--systemd-cgroup", "run", "-b", "/b2", "id"], ("/b2/config.json", True)),
        ([*ROOT, "create", "--bundle=/b3", "id"], ("/b3/config.json", True)),
        ([*ROOT, "exec", "--process", "/tmp/p.json", "--detach", "id"], ("/tmp/p.json", False)),
        ([*ROOT, "exec", "-p", "/tmp/q.json", "id"], ("/tmp/q.json", False)),
        ([*ROOT, "start", "id"], None),
        ([*ROOT, "delete", "--force", "id"], None),
        (["--version"], None),
    ],
)
def test_file_to_relax_for_each_runc_command(args, expected):
    found = file_to_relax(args)
    assert (None if found is None else (str(found[0]), found[1])) == expected


def test_the_subcommand_is_found_after_global_options_with_values():
    assert subcommand(["--root", "create", "--log", "x", "state", "id"]) == ("state", ["id"])


def test_installed_wrapper_edits_the_bundle_and_execs_runc(tmp_path, monkeypatch):
    """The script as installed, run by the system Python, with a fake runc that reports."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps({"process": privileged_process()}))
    fake_runc = tmp_path / "runc"
    fake_runc.write_text(f"#!{sys.executable}\nimport sys, json; print(json.dumps(sys.argv[1:]))\n")
    fake_runc.chmod(fake_runc.stat().st_mode | stat.S_IXUSR)
    script = tmp_path / "kube-harness-runc"
    source = Path(runtime_shim.__file__).read_text()
    script.write_text(
        source.replace("RUNC_CANDIDATES = (", f"RUNC_CANDIDATES = ({str(fake_runc)!r}, ")
    )
    done = subprocess.run(
        [sys.executable, "-I", script, "--root", "/r", "create", "--bundle", bundle, "c1"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert json.loads(done.stdout) == ["--root", "/r", "create", "--bundle", str(bundle), "c1"]
    process = json.loads((bundle / "config.json").read_text())["process"]
    assert "CAP_SYS_RESOURCE" not in process["capabilities"]["bounding"]
    assert process["oomScoreAdj"] == 0
