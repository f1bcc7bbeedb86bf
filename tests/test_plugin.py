"""The pytest plugin, black-box through pytester."""

import json
import re
from pathlib import Path

import pytest
import yaml
from kubeconfigs import write_kubeconfig

from harness.kube import Kube
from harness.locks import file_lock
from harness.namespaces import MANAGED_BY, namespace_name
from harness.plugin import TURN_HELD_ENV

SHOW_SELECTION = """
def test_show(cluster_selection):
    print(f"SELECTED {cluster_selection.name} {cluster_selection.reason}")
"""


@pytest.fixture
def kubeconfig_file(tmp_path: Path) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig")


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
def test_passes(namespace, kube_api):
    labels = kube_api.core.read_namespace(namespace).metadata.labels
    assert labels["{MANAGED_BY}"] == "kube-harness"
    print("PASSING-NS", namespace)

def test_fails(namespace, kube_api):
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


def test_namespaces_are_removed_and_failures_leave_diagnostics(pytester, cluster, kube_api):
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
        assert _phase(kube_api, passing) in ("Terminating", "Gone")
        assert _phase(kube_api, failing) == "Active"  # kept on request
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
        kube_api.core.delete_namespace(failing)


DEMO_SPEC = Path(__file__).resolve().parents[1] / "scenarios" / "demo-service.spec.yaml"


def test_repeat_runs_every_scenario_n_times_with_its_own_id(pytester):
    pytester.makepyfile("""
        def test_scenario(service_spec, harness_repeat):
            print("RUN", service_spec.name, harness_repeat)

        def test_unit():
            pass
    """)
    result = pytester.runpytest(
        "-v", "--repeat=3", f"--resilience-spec={DEMO_SPEC}", "--no-builtin-suite"
    )
    result.assert_outcomes(passed=16)  # five services, three times each
    result.stdout.fnmatch_lines(
        [
            "*test_scenario?demo-run1of3? PASSED*",
            "*test_scenario?demo-run2of3? PASSED*",
            "*test_scenario?demo-run3of3? PASSED*",
            "*test_scenario?demo-blue-green-run1of3? PASSED*",
        ]
    )


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        ('@pytest.mark.promises("hpaa")', "a service's spec has no 'hpaa' there"),
        ("@pytest.mark.promises()", "the `promises` marker takes the promises a service must"),
    ],
)
def test_a_promise_that_names_nothing_is_a_collection_error_naming_the_test(pytester, marker, says):
    pytester.makepyfile(f"""
        import pytest

        {marker}
        def test_scenario(service_spec):
            pass
    """)
    result = pytester.runpytest(f"--resilience-spec={DEMO_SPEC}", "--no-builtin-suite")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*kube-harness: *::test_scenario: *{says}*"])


def test_a_scenario_runs_for_the_services_that_make_its_promise_and_none_is_deselected(
    pytester,
):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.promises("rollout.strategy=blue-green")
        def test_switch(service_spec):
            print("SWITCH", service_spec.name)

        @pytest.mark.promises("hpa")
        def test_hpa(service_spec):
            print("HPA", service_spec.name)

        @pytest.mark.promises("rollout.strategy=canary", "rollout.controller=argo-rollouts")
        def test_argo_canary(service_spec):
            print("ARGO", service_spec.name)

        @pytest.mark.promises("helm")
        def test_chart_upgrade(service_spec):
            raise AssertionError("no service of the demo spec is a Helm chart")
    """)
    result = pytester.runpytest("-v", f"--resilience-spec={DEMO_SPEC}", "--no-builtin-suite")
    result.assert_outcomes(passed=4, deselected=1)
    result.stdout.fnmatch_lines(
        [
            "*test_switch?demo-blue-green? PASSED*",
            "*test_switch?demo-argo-blue-green? PASSED*",
            "*test_hpa?demo? PASSED*",
            "*test_argo_canary?demo-argo-canary? PASSED*",
        ],
        consecutive=False,
    )


def test_repeat_below_one_is_refused(pytester):
    result = pytester.runpytest("--repeat=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--repeat needs N >= 1*"])


def test_a_run_id_with_a_path_in_it_is_refused_before_anything_is_written(pytester):
    result = pytester.runpytest("--run-id=../../outside")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*run id '../../outside' is not usable*"])
    assert not (pytester.path / "reports").exists()
    assert not (pytester.path.parent / "outside").exists()


# Tests in two files on two xdist workers (--dist loadfile: one file each), against a
# stand-in cluster. Each records which other tests it saw running while it held its turn
# (a file per running test). The two plain tests first wait to see each other: that proves
# the workers run side by side, so the turns below cannot hold by accident (workers that
# started far apart). Then the CPU-sensitive two start together and must not see each
# other; the exclusive one must see nobody, while a plain test on the other worker waits
# for it.
XDIST_TURNS_COMMON = """
    import json, time
    from pathlib import Path
    import pytest

    RUNNING = Path("running")

    class StandInCluster:
        def wait_ready(self, timeout):
            pass

    @pytest.fixture(scope="session")
    def cluster():
        return StandInCluster()

    @pytest.fixture
    def turn(request):
        RUNNING.mkdir(exist_ok=True)
        me = RUNNING / request.node.name
        me.touch()
        seen = set()

        def look(wait_s, partner=None):
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and partner not in seen:
                seen.update(p.name for p in RUNNING.iterdir() if p != me)
                time.sleep(0.05)

        yield look
        me.unlink()
        with Path("seen.jsonl").open("a") as out:
            out.write(json.dumps([request.node.name, sorted(seen)]) + "\\n")
"""
XDIST_TURNS_A = """
    import pytest

    def test_plain_a(cluster, turn):
        turn(20, partner="test_plain_b")

    @pytest.mark.cpu_sensitive
    def test_hpa(cluster, turn):
        turn(2)

    def test_plain_waiting_for_the_node_fault(cluster, turn):
        turn(4, partner="test_node_fault")
"""
XDIST_TURNS_B = """
    import pytest

    def test_plain_b(cluster, turn):
        turn(20, partner="test_plain_a")

    @pytest.mark.cpu_sensitive
    def test_capacity(cluster, turn):
        turn(2)

    @pytest.mark.exclusive_cluster
    def test_node_fault(cluster, turn):
        turn(2)
"""


@pytest.mark.slow
def test_xdist_workers_take_turns_on_the_shared_cluster(pytester):
    pytester.makeconftest(XDIST_TURNS_COMMON)
    pytester.makepyfile(test_a=XDIST_TURNS_A, test_b=XDIST_TURNS_B)
    result = pytester.runpytest_subprocess(
        "-n", "2", "-p", "xdist", "--dist", "loadfile", "--cluster-name=pytester-turns"
    )
    result.assert_outcomes(passed=6)
    lines = (pytester.path / "seen.jsonl").read_text().splitlines()
    seen = {name: set(others) for name, others in map(json.loads, lines)}
    assert "test_plain_b" in seen["test_plain_a"] and "test_plain_a" in seen["test_plain_b"]
    assert "test_capacity" not in seen["test_hpa"] and "test_hpa" not in seen["test_capacity"]
    assert seen["test_node_fault"] == set()
    assert "test_node_fault" not in seen["test_plain_waiting_for_the_node_fault"]


def test_an_exclusive_test_hands_its_turn_on_only_once_the_cluster_is_ready(pytester):
    """What a kubelet restart left recovering is waited for before the next test; a cluster
    still not ready is an error of the exclusive test, not a failure of the next one."""
    pytester.makeconftest("""
        import pytest
        from harness.errors import WaitTimeout

        WAITS = []

        class RecoveringCluster:
            def wait_ready(self, timeout):
                WAITS.append(timeout)
                raise WaitTimeout("metrics-server", timeout, "not available")

        @pytest.fixture(scope="session")
        def cluster():
            return RecoveringCluster()

        @pytest.fixture
        def waits():
            return WAITS
    """)
    pytester.makepyfile("""
        import pytest

        def test_plain(cluster, waits):
            pass

        @pytest.mark.exclusive_cluster
        def test_kubelet_restart(cluster, waits):
            pass

        def test_next(cluster, waits):
            assert len(waits) == 1
    """)
    result = pytester.runpytest("--cluster-name=pytester-ready-again")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*test_kubelet_restart held the cluster alone and left it not ready: timed out "
        "after 180s waiting for metrics-server; last seen: not available",
        "*fix: revert what the test changed on the cluster*",
    ])  # fmt: skip


def test_tests_whose_fixtures_reach_the_cluster_are_marked_e2e(pytester):
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(scope="session")
        def cluster():
            return "stand-in"

        @pytest.fixture
        def deployed(cluster):
            return "deployed"
    """)
    pytester.makepyfile("""
        def test_unit(): pass
        def test_direct(cluster): pass
        def test_through_a_fixture(deployed): pass
    """)
    result = pytester.runpytest("-m", "not e2e", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::test_unit", "1/3 tests collected (2 deselected)*"])
    result = pytester.runpytest("-m", "e2e", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*::test_direct", "*::test_through_a_fixture", "2/3 *"])


def test_a_pytest_run_by_a_test_takes_its_turn_from_that_test(pytester, monkeypatch):
    """An example suite's pytest runs inside a test that holds the cluster alone: waiting for
    that lock would wait forever, so it takes the turn its parent names."""
    pytester.makeconftest(XDIST_TURNS_COMMON)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.exclusive_cluster
        def test_node_fault(cluster, turn):
            turn(0)
    """)
    name = "pytester-inherited-turn"
    monkeypatch.setenv(TURN_HELD_ENV, name)
    # The inner run's home is pytester's folder, and its cache with it.
    with file_lock(pytester.path / ".cache" / "kube-harness" / "locks" / f"use-{name}.lock"):
        result = pytester.runpytest_subprocess(f"--cluster-name={name}", timeout=60)
    result.assert_outcomes(passed=1)


def test_a_session_that_recorded_something_writes_its_report_and_latest(pytester):
    pytester.makepyfile("""
        def test_records(test_report_dir):
            (test_report_dir / "note.txt").write_text("recorded")
    """)
    result = pytester.runpytest("--run-id=r1", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*kube-harness report: *"])
    run = pytester.path / "reports" / "r1"
    for name in ("index.html", "summary.md", "results.json", "junit.xml"):
        assert (run / name).is_file(), name
    assert (pytester.path / "reports" / "latest").resolve() == run.resolve()


def test_a_plain_unit_test_session_writes_no_report(pytester):
    pytester.makepyfile("def test_nothing_recorded(): pass")
    pytester.runpytest("--run-id=r2").assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_node_experiments_run_alone_on_the_cluster(pytester):
    experiments = DEMO_SPEC.parent / "experiments"
    items, _ = pytester.inline_genitems(str(experiments), f"--resilience-spec={DEMO_SPEC}")
    exclusive = {item.name for item in items if item.get_closest_marker("exclusive_cluster")}
    assert exclusive == {"kubelet-restart[demo]", "drain-blocked-by-pdb[demo]"}
    assert len(items) == 5


def test_an_experiment_file_given_by_itself_is_an_item_for_the_service_asked_for(pytester):
    """What `harness chaos run FILE` runs: a file given on the command line is collected
    wherever it lies, against --experiment-service (an unknown one is a collection error)."""
    mine = pytester.path / "mine.yaml"
    mine.write_text((DEMO_SPEC.parent / "experiments" / "pod-kill-under-load.yaml").read_text())
    two = yaml.safe_load(DEMO_SPEC.read_text())
    first = two["services"][0]
    first["manifests"] = str((DEMO_SPEC.parent / first["manifests"]).resolve())
    two["services"] = [first, {**first, "name": "again"}]
    spec = pytester.path / "two.spec.yaml"
    spec.write_text(yaml.safe_dump(two))
    args = (str(mine), f"--resilience-spec={spec}", "--no-builtin-suite")
    items, _ = pytester.inline_genitems(*args)
    assert [item.name for item in items] == ["mine[demo]"]  # the spec's first
    items, _ = pytester.inline_genitems(*args, "--experiment-service=again")
    assert [item.name for item in items] == ["mine[again]"]
    result = pytester.runpytest(*args, "--experiment-service=nope", "--collect-only")
    result.stdout.fnmatch_lines(["*no service named 'nope'*"])
    assert result.ret == pytest.ExitCode.INTERRUPTED
