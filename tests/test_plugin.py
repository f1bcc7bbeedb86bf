"""The pytest plugin, black-box through pytester."""

import re
from pathlib import Path

import pytest
import yaml

from harness.kube import Kube
from harness.namespaces import MANAGED_BY, namespace_name

SHOW_SELECTION = """
def test_show(cluster_selection):
    print(f"SELECTED {cluster_selection.name} {cluster_selection.reason}")
"""


@pytest.fixture
def kubeconfig_file(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
        )
    )
    return path


def test_options_live_in_one_group_beside_pytest_kinds(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "kube-harness*",
            "*--cluster-provider={auto,local,kind,existing}*",
            "*--keep-failed-namespaces*",
            "kind:",
            "*--cluster-name=CLUSTER_NAME*",
            "*--keep-cluster*",
            "*--kubeconfig=KUBECONFIG*",
        ]
    )


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--cluster-provider=existing"], {}, "*SELECTED existing from --cluster-provider"),
        ([], {"HARNESS_PROVIDER": "existing"}, "*SELECTED existing from HARNESS_PROVIDER"),
        (
            ["--cluster-provider=existing"],
            {"HARNESS_PROVIDER": "kind"},
            "*SELECTED existing from --cluster-provider",
        ),
        ([], {}, "*SELECTED existing detected: kubeconfig * given"),
    ],
)
def test_provider_selection_order(pytester, monkeypatch, kubeconfig_file, args, env, expected):
    monkeypatch.delenv("HARNESS_PROVIDER", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile(SHOW_SELECTION)
    result = pytester.runpytest("-s", f"--kubeconfig={kubeconfig_file}", *args)
    result.stdout.fnmatch_lines([expected])
    assert result.ret == 0


def test_unknown_provider_in_environment_fails_with_the_choices(pytester, monkeypatch):
    monkeypatch.setenv("HARNESS_PROVIDER", "minikube")
    pytester.makepyfile(SHOW_SELECTION)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "*HARNESS_PROVIDER='minikube' is not a cluster provider*",
            "*fix: choose one of: auto, local, kind, existing*",
        ]
    )
    assert result.ret == 1


def test_run_id_and_test_report_dir(pytester):
    pytester.makepyfile("""
        def test_where(test_report_dir, harness_run):
            assert harness_run.run_id == "fixed-run"
            assert test_report_dir.is_dir()
            print("DIR", test_report_dir)
    """)
    result = pytester.runpytest("-s", "--run-id=fixed-run", "--reports-dir=out")
    result.stdout.fnmatch_lines(
        [
            "kube-harness: run fixed-run, reports in */out/fixed-run",
            "*DIR */out/fixed-run/test_run_id_and_test_report_dir.py__test_where",
        ]
    )


def test_namespace_names_are_dns_labels_grouped_by_run():
    name = namespace_name("20261123-011530-a1b2")
    assert re.fullmatch(r"kh-20261123-011530-a1b2-[0-9a-f]{6}", name)
    assert namespace_name("20261123-011530-a1b2") != name


INNER_NAMESPACE_TESTS = f"""
def test_passes(namespace, kube):
    labels = kube.core.read_namespace(namespace).metadata.labels
    assert labels["{MANAGED_BY}"] == "kube-harness"
    print("PASSING-NS", namespace)

def test_fails(namespace, kube):
    print("FAILING-NS", namespace)
    assert False, "on purpose"
"""


def _phase(kube: Kube, name: str) -> str:
    from kubernetes.client.exceptions import ApiException

    try:
        return kube.core.read_namespace(name).status.phase
    except ApiException as exc:
        if exc.status == 404:
            return "Gone"
        raise


@pytest.mark.e2e
def test_namespaces_are_removed_and_failures_leave_diagnostics(pytester, cluster, kube):
    pytester.makepyfile(INNER_NAMESPACE_TESTS)
    result = pytester.runpytest_subprocess(
        "-s",
        "--cluster-provider=existing",
        f"--kubeconfig={cluster.kubeconfig()}",
        "--run-id=plugin-e2e",
        "--keep-failed-namespaces",
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    passing = re.search(r"PASSING-NS (\S+)", out)[1]
    failing = re.search(r"FAILING-NS (\S+)", out)[1]
    assert passing.startswith("kh-plugin-e2e-")
    try:
        assert _phase(kube, passing) in ("Terminating", "Gone")
        assert _phase(kube, failing) == "Active"  # kept on request
        (test_dir,) = (pytester.path / "reports" / "plugin-e2e").glob("*.py__test_fails")
        bundle = test_dir / "diagnostics"
        for part in (
            "events.txt",
            "pods.json",
            "deployments.json",
            "hpa.json",
            "provider/nodes.json",
        ):
            assert (bundle / part).is_file(), part
        assert not (bundle / "errors.txt").exists()
        result.stdout.fnmatch_lines(
            ["*kube-harness diagnostics*", f"*{bundle.relative_to(pytester.path)}"]
        )
    finally:
        kube.core.delete_namespace(failing)
