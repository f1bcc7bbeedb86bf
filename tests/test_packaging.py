"""Packaging: the built-in suite (scenarios, experiments, locustfiles, the demo service) ships
inside kube-harness, is found in a checkout and in an installed wheel, and is collected by the
plugin next to a repository's own tests when a resilience spec is given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from setuptools import find_packages

from harness import suite
from harness.errors import InvalidConfiguration

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "scenarios" / "demo-service.spec.yaml"
SPEC = f"--resilience-spec={DEMO_SPEC}"
SCENARIO_MODULES = sorted(p.name for p in suite.SCENARIOS.glob("test_*.py"))
EXPERIMENT_FILES = sorted(p.name for p in suite.EXPERIMENTS.glob("*.yaml"))


def test_the_suite_is_found_in_a_checkout_and_the_library_uses_it():
    from harness.images.demo import APP_SOURCE
    from harness.load import DEMO_LOCUSTFILE
    from harness.scenario import PATHS_LOCUSTFILE

    assert not suite.INSTALLED
    assert suite.SCENARIOS == ROOT / "scenarios" == suite.require()
    for path in (suite.DEMO_SPEC, suite.PATHS_LOCUSTFILE, suite.DEMO_LOCUSTFILE, suite.DEMO_APP):
        assert path.is_file(), path
    assert SCENARIO_MODULES and EXPERIMENT_FILES
    assert PATHS_LOCUSTFILE == suite.PATHS_LOCUSTFILE
    assert DEMO_LOCUSTFILE == suite.DEMO_LOCUSTFILE
    assert APP_SOURCE == suite.DEMO_APP


def test_without_a_spec_of_its_own_a_project_gets_the_shipped_demo_spec(tmp_path):
    from harness.scenario import spec_path

    assert spec_path(None, tmp_path) == suite.DEMO_SPEC
    own = tmp_path / "scenarios" / "demo-service.spec.yaml"
    own.parent.mkdir()
    own.write_text("")
    assert spec_path(None, tmp_path) == own
    assert spec_path("mine.yaml", tmp_path) == Path("mine.yaml")


def test_pyproject_packages_every_harness_package_and_maps_the_suite():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config["package-dir"]
    assert mapped == {
        "harness._suite.loadtests": "loadtests",
        "harness._suite.manifests": "manifests",
        "harness._suite.scenarios": "scenarios",
    }
    found = find_packages(where=str(ROOT), include=["harness*"])
    assert sorted(config["packages"]) == sorted([*found, *mapped]), (
        "a package is missing from [tool.setuptools] packages in pyproject.toml"
    )


def test_every_builtin_scenario_module_has_an_area_marker():
    for name in SCENARIO_MODULES:
        assert suite.AREAS.get(Path(name).stem) in suite.MARKERS, name
    assert "chaos" in suite.MARKERS


def test_the_suite_is_added_unless_a_path_given_collects_it():
    added = suite.collection(["tests"], ROOT)
    assert added is not None and added.args == ["tests", str(suite.SCENARIOS)]
    assert not added.through
    for args in (["tests", "scenarios"], ["."], ["scenarios/experiments"], [str(ROOT)]):
        assert suite.collection(args, ROOT) is None, args
    only = suite.collection(["tests"], ROOT, only=True, explicit=False)
    assert only is not None and only.args == [str(suite.SCENARIOS)]
    assert suite.collection(["scenarios/test_probes.py::x"], ROOT, only=True) is None
    with pytest.raises(InvalidConfiguration, match="alone, not tests"):
        suite.collection(["tests"], ROOT, only=True)


def test_an_installed_suite_in_the_repositorys_virtualenv_is_walked_to(tmp_path, monkeypatch):
    """pytest drops a path inside another one given and never enters a virtualenv: with the
    repository itself given, the walk is led through the virtualenv to the suite alone."""
    repo = tmp_path / "repo"
    packaged = repo / ".venv" / "lib" / "site-packages" / "harness" / "_suite" / "scenarios"
    packaged.mkdir(parents=True)
    monkeypatch.setattr(suite, "INSTALLED", True)
    monkeypatch.setattr(suite, "SCENARIOS", packaged)
    walked = suite.collection(["."], repo)
    assert walked is not None and walked.args == ["."]
    assert walked.through == set(list(packaged.parents)[:5])  # _suite ... .venv
    assert repo / ".venv" in walked.through and repo not in walked.through
    assert walked.ignore(repo / ".venv") is False
    assert walked.ignore(packaged) is False
    assert walked.ignore(repo / ".venv" / "bin") is True
    assert walked.ignore(repo / ".venv" / "lib" / "site-packages" / "kubernetes") is True
    assert walked.ignore(packaged.parent / "loadtests") is True
    assert walked.ignore(repo / "tests") is None
    assert walked.ignore(packaged / "experiments") is None
    beside = suite.collection(["tests"], repo)  # testpaths: the suite is added as a path
    assert beside is not None and beside.args == ["tests", str(packaged)]


OWN_TEST = "def test_own():\n    pass\n"


def collected(pytester, *args: str) -> list[pytest.Item]:
    """Every item collected (before -m or -k deselect)."""
    items, _ = pytester.inline_genitems(*args)
    return items


def collected_ids(output: str) -> list[str]:
    return [line for line in output.splitlines() if "::" in line]


def test_the_builtin_suite_is_collected_only_with_a_spec(pytester):
    pytester.makepyfile(test_own=OWN_TEST)
    builtin = collected(pytester, SPEC, "--builtin-suite-only")
    assert {item.path.name for item in builtin} == {*SCENARIO_MODULES, *EXPERIMENT_FILES}
    assert all(suite.contains(item.path) for item in builtin)

    assert [item.name for item in collected(pytester)] == ["test_own"]
    assert [item.name for item in collected(pytester, SPEC, "--no-builtin-suite")] == ["test_own"]
    both = collected(pytester, SPEC)
    assert [item.nodeid for item in both] == [
        "test_own.py::test_own",
        *(item.nodeid for item in builtin),
    ]


def test_the_builtin_suite_named_on_the_command_line_is_collected_once(pytester):
    builtin = collected(pytester, SPEC, "--builtin-suite-only")
    named = collected(pytester, SPEC, str(suite.SCENARIOS))
    assert [(item.path, item.name) for item in named] == [(i.path, i.name) for i in builtin]
    experiments = collected(pytester, SPEC, str(suite.EXPERIMENTS))
    assert sorted(item.path.name for item in experiments) == EXPERIMENT_FILES


@pytest.mark.slow
def test_builtin_items_carry_their_area_markers_for_selection(pytester):
    for item in collected(pytester, SPEC, "--builtin-suite-only"):
        area = "chaos" if item.path.suffix == ".yaml" else suite.AREAS[item.path.stem]
        assert item.get_closest_marker(area), item.nodeid
    hpa = pytester.runpytest(SPEC, "--builtin-suite-only", "-m", "hpa", "--co", "-q")
    assert collected_ids(hpa.stdout.str()) == [
        "test_hpa_scaling.py::test_hpa_scales_up_under_cpu_load_and_back_down[demo]"
    ]
    chaos = pytester.runpytest(SPEC, "--builtin-suite-only", "-m", "chaos", "--co", "-q")
    files = sorted(i.split("::")[0] for i in collected_ids(chaos.stdout.str()))
    assert files == [f"experiments/{name}" for name in EXPERIMENT_FILES]
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.self_healing:*", "@pytest.mark.chaos:*"])


def test_contradicting_suite_options_are_usage_errors(pytester):
    pytester.makepyfile(test_own=OWN_TEST)
    both = pytester.runpytest(SPEC, "--builtin-suite-only", "--no-builtin-suite")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--builtin-suite-only and --no-builtin-suite*"])
    paths = pytester.runpytest(SPEC, "--builtin-suite-only", "test_own.py")
    assert paths.ret == pytest.ExitCode.USAGE_ERROR
    paths.stderr.fnmatch_lines(["*built-in suite alone, not test_own.py", "*fix: drop those*"])


def harness_run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_harness_run_is_pytest_with_the_spec_and_passes_its_exit_code_on(tmp_path):
    probes = harness_run(tmp_path, str(DEMO_SPEC), "--", "--collect-only", "-q", "-m", "probes")
    assert probes.returncode == 0, probes.stdout + probes.stderr
    assert probes.stdout.count("test_probes.py::") == 3
    nothing = harness_run(tmp_path, str(DEMO_SPEC), "--", "--collect-only", "-k", "no_such")
    assert nothing.returncode == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "pytest collected no tests (exit 5)" in nothing.stderr
    missing = harness_run(tmp_path, "nope.yaml")
    assert missing.returncode == 2
    assert "resilience spec nope.yaml does not exist" in missing.stderr


# --- the built wheel, installed in a fresh virtualenv outside the checkout -------------------


# The environment of the installed harness: nothing that would point Python back at the
# checkout, or pytest at this run.
class Installed:
    """A user's repository with its own virtualenv, kube-harness installed from the wheel."""

    def __init__(self, repo: Path, env: dict[str, str]) -> None:
        self.repo = repo
        self.bin = repo / ".venv" / "bin"
        self.env = dict(env)
        self.env["PATH"] = f"{self.bin}{os.pathsep}{self.env.get('PATH', '')}"

    def run(self, program: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bin / program), *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory, kube_harness_wheel: Path, installation_env) -> Installed:
    """The wheel built from this checkout, installed with its dependencies (from PyPI, through
    pip's cache) into a fresh virtualenv inside a user's repository: the demo service's
    manifests and spec, a test and an experiment of its own, with file names the built-in
    suite also uses."""
    wheel = kube_harness_wheel
    work = tmp_path_factory.mktemp("wheel")
    repo = work / "repo"
    shutil.copytree(ROOT / "manifests", repo / "manifests")
    spec = DEMO_SPEC.read_text().replace("../manifests/", "manifests/")
    (repo / "resilience.yaml").write_text(spec)
    (repo / "tests").mkdir()
    (repo / "tests" / "test_self_healing.py").write_text(OWN_TEST)
    venv.EnvBuilder(with_pip=True).create(repo / ".venv")
    user = Installed(repo, installation_env)
    pip = user.run("pip", "install", "-q", "--no-compile", str(wheel), timeout=900)
    assert pip.returncode == 0, pip.stderr

    where = user.run("python", "-c", "import harness, sys; print(harness.__file__, sys.path)")
    assert where.stdout.startswith(str(repo / ".venv")), where.stdout + where.stderr
    assert str(ROOT) not in where.stdout
    packaged = user.run("python", "-c", "from harness import suite; print(suite.EXPERIMENTS)")
    experiments = Path(packaged.stdout.strip())
    assert experiments.is_relative_to(repo / ".venv"), packaged.stderr
    (repo / "scenarios" / "experiments").mkdir(parents=True)
    (repo / "scenarios" / "test_probes.py").write_text(OWN_TEST)
    shutil.copy(experiments / "pod-kill-under-load.yaml", repo / "scenarios/experiments/mine.yaml")
    return user


OWN_ITEMS = [
    "scenarios/experiments/mine.yaml::mine[demo]",
    "scenarios/test_probes.py::test_own",
    "tests/test_self_healing.py::test_own",
]


def assert_suite_beside_own(ids: list[str]) -> None:
    builtin = [i for i in ids if "/harness/_suite/scenarios/" in i]
    assert sorted(set(ids) - set(builtin)) == OWN_ITEMS
    assert len(builtin) == len(set(builtin))
    assert {i.split("::")[0].rpartition("/")[2] for i in builtin} == {
        *SCENARIO_MODULES,
        *EXPERIMENT_FILES,
    }


@pytest.mark.builds
def test_the_installed_wheel_collects_the_suite_beside_the_repositorys_own(installed):
    run = installed.run("pytest", "--resilience-spec=resilience.yaml", "--collect-only", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_suite_beside_own(collected_ids(run.stdout))

    plain = installed.run("pytest", "--collect-only", "-q")
    assert collected_ids(plain.stdout) == OWN_ITEMS, plain.stdout + plain.stderr
    hpa = installed.run("pytest", "--resilience-spec=resilience.yaml", "--co", "-q", "-m", "hpa")
    assert [i.rpartition("/")[2] for i in collected_ids(hpa.stdout)] == [
        "test_hpa_scaling.py::test_hpa_scales_up_under_cpu_load_and_back_down[demo]"
    ]


@pytest.mark.builds
def test_harness_run_from_the_installed_wheel(installed):
    run = installed.run("harness", "run", "resilience.yaml", "--", "--collect-only", "-q")
    assert run.returncode == 0, run.stdout + run.stderr
    assert_suite_beside_own(collected_ids(run.stdout))


def test_a_scenario_runs_from_the_installed_wheel(installed, cluster, cluster_options):
    """One short built-in scenario, from the wheel, on the run's cluster (kept: it is this
    session's)."""
    options = [
        f"--cluster-provider={cluster.name}",
        f"--cluster-name={cluster_options.name}",
        f"--cluster-workers={cluster_options.workers}",
        "--keep-cluster",
        "--run-id=from-wheel",
    ]
    if cluster.name == "existing":
        options += [f"--kubeconfig={cluster.kubeconfig()}"]
        options += (
            [f"--cluster-context={cluster_options.context}"] if cluster_options.context else []
        )
    run = installed.run(
        "harness",
        "run",
        "resilience.yaml",
        "--",
        "--builtin-suite-only",
        "-k",
        "killed_container",
        *options,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    (result,) = (installed.repo / "reports" / "from-wheel").glob("*killed_container*/result.json")
    assert result.is_file()
