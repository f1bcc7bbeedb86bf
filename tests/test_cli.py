import subprocess
import sys

import pytest

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
