import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kubeconfigs import write_kubeconfig

from harness.cli import main


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_console_script_lists_its_commands():
    done = harness("--help")
    assert done.returncode == 0
    assert "cluster" in done.stdout and "doctor" in done.stdout
    cluster = harness("cluster", "--help")
    for action in ("up", "down", "status", "kubeconfig", "logs"):
        assert action in cluster.stdout


def test_unknown_provider_is_a_usage_error():
    done = harness("cluster", "up", "--provider", "minikube")
    assert done.returncode == 2
    assert "invalid choice: 'minikube'" in done.stderr


def test_missing_kubeconfig_for_existing_names_the_file_and_the_fix(tmp_path, capsys):
    missing = tmp_path / "nope"
    code = main(["cluster", "status", "--provider", "existing", "--kubeconfig", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"kubeconfig {missing} does not exist" in err
    assert "fix:" in err


def test_bad_cluster_name_is_refused_before_anything_runs(capsys):
    assert main(["cluster", "up", "--provider", "existing", "--name", "Bad_Name"]) == 2
    assert "cluster name 'Bad_Name' is not valid" in capsys.readouterr().err


@pytest.mark.parametrize("provider", ["kind", "existing", "local"])
def test_doctor_reports_every_provider_with_fixes(provider, capsys):
    from harness.doctor import all_checks

    checks = all_checks()[provider]
    assert checks
    for check in checks:
        assert check.ok or check.fix, f"{provider}/{check.name} is missing but says no fix"
    assert main(["doctor"]) in (0, 1)
    assert f"{provider}: " in capsys.readouterr().out


def test_doctor_lists_each_addon_installed_on_demand_with_its_pin_and_build(
    monkeypatch, tmp_path, capsys
):
    from harness.doctor import ADDONS, addon_checks, render
    from harness.paths import CACHE_DIR_ENV

    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))  # an empty cache: nothing built yet
    addons = addon_checks()
    shown = render({}, addons)
    assert ADDONS in shown and all(check.ok for check in addons)
    assert "Argo Rollouts v1.10.1" in shown and "kube-router/v2 v2.1.0" in shown
    assert shown.count("not built yet: the first run builds it") == 2


RESTART_KUBELET = """
title: t
description: d
method:
  - type: action
    name: restart-kubelet
    provider:
      type: python
      module: harness.chaos.actions
      func: restart_component
      arguments: {component: kubelet}
"""
CHAOS_EXPERIMENT = """
title: t
description: d
method:
  - type: action
    name: kill
    provider:
      type: python
      module: chaosk8s.pod.actions
      func: terminate_pods
      arguments: {label_selector: app=demo, ns: "%s"}
"""


def help_of(capsys, *command: str) -> str:
    """What `harness COMMAND --help` prints (in this process: the console script has its own
    test)."""
    with pytest.raises(SystemExit) as done:
        main([*command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_chaos_commands_are_listed(capsys):
    assert "chaos" in help_of(capsys)
    listed = help_of(capsys, "chaos")
    assert "run" in listed and "revert" in listed
    run = help_of(capsys, "chaos", "run")
    for option in ("--service", "--spec", "--reports-dir"):
        assert option in run


@pytest.mark.parametrize(
    ("namespace", "module", "message"),
    [
        ("default", "chaosk8s.pod.actions", "sets ns='default', not ${harness_namespace}"),
        ("${harness_namespace}", "khx.nowhere", "could not find Python module 'khx.nowhere'"),
    ],
)
def test_chaos_run_refuses_a_bad_experiment_before_anything_runs(
    tmp_path, capsys, monkeypatch, namespace, module, message
):
    from harness.cluster import active

    monkeypatch.setattr(active, "read", lambda *a: pytest.fail("the cluster was looked up"))
    path = tmp_path / "bad.yaml"
    path.write_text(CHAOS_EXPERIMENT.replace("chaosk8s.pod.actions", module) % namespace)
    assert main(["chaos", "run", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: experiment {path}")
    assert message in err and "fix:" in err


def test_chaos_run_needs_an_active_cluster(tmp_path, capsys, monkeypatch):
    from harness.cluster import active

    monkeypatch.setattr(active, "read", lambda *a: None)
    path = tmp_path / "good.yaml"
    path.write_text(CHAOS_EXPERIMENT % "${harness_namespace}")
    assert main(["chaos", "run", str(path), "--spec", "scenarios/demo-service.spec.yaml"]) == 2
    assert "no active cluster to run the experiment on" in capsys.readouterr().err


class PytestRun:
    """Stands in for the pytest process a command starts (other processes start as they
    would): the arguments it got, the exit code it gives."""

    def __init__(self, code: int) -> None:
        self.code, self.argv, self.popen = code, None, subprocess.Popen

    def __call__(self, argv, **kwargs):
        if argv[:3] != [sys.executable, "-m", "pytest"]:
            return self.popen(argv, **kwargs)
        self.argv, self.returncode = argv, None
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def wait(self):
        self.returncode = self.code


def test_chaos_run_is_the_suites_pytest_item_on_the_active_cluster(tmp_path, monkeypatch, pytester):
    """One lifecycle: the experiment runs as the pytest item the suite makes of it, on the
    active cluster, which it keeps; a failed verdict is pytest's exit 1. The plugin takes
    those arguments together and makes the item of the file given."""
    from harness.cluster import active
    from harness.cluster.kind import KindProvider

    kubeconfig = tmp_path / "kubeconfig"
    monkeypatch.setattr(
        active, "read", lambda *a: active.ActiveCluster("kind", "kh", str(kubeconfig), "kind-kh")
    )
    monkeypatch.setattr(KindProvider, "wait_ready", lambda self, timeout: None)
    pytest_run = PytestRun(code=1)
    monkeypatch.setattr(subprocess, "Popen", pytest_run)
    path = tmp_path / "good.yaml"
    path.write_text(CHAOS_EXPERIMENT % "${harness_namespace}")
    spec = Path(__file__).parents[1] / "scenarios" / "demo-service.spec.yaml"
    assert main(["chaos", "run", str(path), "--spec", str(spec), "--service", "demo"]) == 1
    assert pytest_run.argv == [
        sys.executable,
        "-m",
        "pytest",
        str(path),
        f"--rootdir={Path.cwd()}",
        "-p",
        "no:cacheprovider",
        f"--resilience-spec={spec.resolve()}",
        "--no-builtin-suite",
        "--cluster-provider=kind",
        "--cluster-name=kh",
        f"--kubeconfig={kubeconfig}",
        "--keep-cluster",
        "--reports-dir=reports",
        "--cluster-context=kind-kh",
        "--experiment-service=demo",
    ]
    collected = pytester.runpytest_inprocess(*pytest_run.argv[3:], "--collect-only", "-q")
    collected.stdout.fnmatch_lines(["*::good[[]demo[]]", "1 test collected*"])


def test_chaos_run_uses_the_active_cluster_as_it_is(tmp_path, capsys, monkeypatch):
    """A cluster that is down is said, not brought up again behind the user's back."""
    from harness.cluster import active
    from harness.cluster.existing import ExistingProvider
    from harness.errors import WaitTimeout

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setattr(
        active, "read", lambda *a: active.ActiveCluster("existing", "theirs", str(kubeconfig))
    )
    asked = []

    def down(self, timeout: float) -> None:  # what an API server that is gone gives
        asked.append(timeout)
        raise WaitTimeout("the API server", timeout, "connection refused")

    monkeypatch.setattr(ExistingProvider, "wait_ready", down)
    pytest_run = PytestRun(code=0)
    monkeypatch.setattr(subprocess, "Popen", pytest_run)
    path = tmp_path / "good.yaml"
    path.write_text(CHAOS_EXPERIMENT % "${harness_namespace}")
    assert main(["chaos", "run", str(path), "--allow-chaos-on-existing"]) == 2
    err = capsys.readouterr().err
    assert "the active cluster theirs (existing) is not ready" in err
    assert "connection refused" in err and "harness cluster up" in err
    assert asked == [10] and pytest_run.argv is None


def test_chaos_run_refuses_what_the_active_clusters_provider_cannot_do(
    tmp_path, capsys, monkeypatch
):
    from harness.cluster import active

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setattr(
        active, "read", lambda *a: active.ActiveCluster("existing", "theirs", str(kubeconfig))
    )
    pytest_run = PytestRun(code=0)
    monkeypatch.setattr(subprocess, "Popen", pytest_run)
    path = tmp_path / "restart.yaml"
    path.write_text(RESTART_KUBELET)
    assert main(["chaos", "run", str(path), "--allow-chaos-on-existing"]) == 2
    err = capsys.readouterr().err
    assert "cannot run on the active cluster theirs" in err
    assert "the existing provider cannot stop and start cluster components" in err
    assert pytest_run.argv is None  # refused before pytest starts


def test_a_damaged_active_cluster_record_is_said_not_taken_for_no_cluster(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    (tmp_path / "active-cluster.json").write_text('{"provider": "local", "na')
    assert main(["chaos", "revert"]) == 2
    err = capsys.readouterr().err
    assert "active-cluster record" in err and "is damaged" in err and "cluster up" in err


def test_chaos_revert_without_a_cluster_names_the_clusters_with_recorded_faults(
    tmp_path, capsys, monkeypatch
):
    from harness.chaos.ledger import Injected, Ledger

    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    Ledger("kh-gone").add(Injected("a1", "partition_pod", "kh-gone", "kh-1", "n", "p"))
    assert main(["chaos", "revert"]) == 2
    err = capsys.readouterr().err
    assert "no active cluster to revert faults on" in err
    assert "faults are recorded for cluster(s) kh-gone" in err


def test_chaos_run_names_an_unknown_service(tmp_path, capsys):
    path = tmp_path / "good.yaml"
    path.write_text(CHAOS_EXPERIMENT % "${harness_namespace}")
    spec = "scenarios/demo-service.spec.yaml"
    assert main(["chaos", "run", str(path), "--spec", spec, "--service", "nope"]) == 2
    assert "no service named 'nope'" in capsys.readouterr().err


def test_chaos_revert_prints_each_fault_and_what_is_left(monkeypatch, capsys):
    from types import SimpleNamespace

    from harness import cli, kube
    from harness.chaos import faults
    from harness.chaos.ledger import Injected

    provider = SimpleNamespace(
        kubeconfig=lambda: "kubeconfig", options=SimpleNamespace(context=None)
    )
    monkeypatch.setattr(cli, "_active_provider", lambda *a, **k: provider)
    monkeypatch.setattr(kube, "Kube", lambda *a: SimpleNamespace(close=lambda: None))
    gone = Injected("1a2b3c", "cordon", "kube-harness", "kh-1", "node-1", "node-1")
    monkeypatch.setattr(faults, "revert_all", lambda cluster, api: [gone])
    monkeypatch.setattr(faults, "leftovers", lambda cluster, api: [])
    assert main(["chaos", "revert"]) == 0
    assert capsys.readouterr().out == f"reverted {gone.describe()}\n"
    monkeypatch.setattr(faults, "leftovers", lambda cluster, api: ["node-1: process 42 sleep"])
    assert main(["chaos", "revert"]) == 1
    assert "still in place: node-1: process 42 sleep" in capsys.readouterr().err


RECORDED_RUN = Path(__file__).parent / "data" / "runs" / "valid-suite"


def test_report_writes_the_three_files_for_a_run_folder(tmp_path, capsys):
    run = tmp_path / "reports" / "run-1"
    shutil.copytree(RECORDED_RUN, run)
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("passed: ")
    for name in ("index.html", "summary.md", "results.json"):
        assert (run / name).is_file(), name


def test_report_refuses_a_folder_that_does_not_exist(tmp_path, capsys):
    assert main(["report", str(tmp_path / "typo")]) == 2
    err = capsys.readouterr().err
    assert "is not a run folder" in err and "reports/latest" in err
    assert not (tmp_path / "typo").exists()


def test_schema_prints_the_spec_schema_or_writes_it(tmp_path, capsys):
    from harness.spec import spec_schema

    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == spec_schema()
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == spec_schema()


def test_chaos_run_runs_an_experiment_on_the_active_cluster_and_keeps_it(
    cluster, monkeypatch, tmp_path
):
    """End to end: `harness chaos run` deploys the spec's service into a fresh namespace of
    the run's (active) cluster, runs the experiment under load, judges it as the suite does
    and leaves the cluster up."""
    from harness.cluster import active
    from harness.plugin import TURN_HELD_ENV

    assert active.read().name == cluster.options.name
    monkeypatch.setenv(TURN_HELD_ENV, cluster.options.name)  # this test holds the turn
    experiment = tmp_path / "my-experiment.yaml"  # a team's own, outside scenarios/
    experiment.write_text(Path("scenarios/experiments/pod-kill-under-load.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "chaos", "run", str(experiment),
         "--reports-dir", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        check=False,
        timeout=15 * 60,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert "1 passed" in done.stdout
    journals = list((tmp_path / "reports").rglob("journal.json"))
    assert journals, "the experiment's journal is in the report"
    cluster.wait_ready(timeout=30)
