"""kube-harness next to kubetest and pytest-kubernetes: pytest starts, and no option or fixture
name of one plugin hides another's.

The three are installed into one venv of their own (built once, kept in the pytest cache under
`plugin-coexistence/`, rebuilt when pyproject.toml changes; about a minute the first time with
pip's cache warm, under a second after). kube-harness is installed editable, so the venv sees
this tree's plugin as it is now.
"""

import hashlib
import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from harness.locks import file_lock

REPO = Path(__file__).resolve().parents[1]
OTHERS = ["kubetest", "pytest-kubernetes"]
# A virtualenv with the other plugins, installed from PyPI.
pytestmark = pytest.mark.builds

# kubetest 0.9.5 (its newest release) names Kubernetes API classes at import time that the
# kubernetes client dropped long ago (v1alpha1/v1beta1 APIs, V1Event, V1Subject); with the
# client kube-harness needs (>=30) its plugin fails to load at all, with or without us. Only
# the names are stood in here, so that its plugin loads and its options and fixtures can be
# compared with ours; nothing talks to a cluster.
KUBETEST_SHIM = """\
import kubernetes.client as client

for name in (
    "AppsV1beta1Api", "AppsV1beta2Api", "ExtensionsV1beta1Api", "RbacAuthorizationV1alpha1Api",
    "RbacAuthorizationV1beta1Api", "V1Event", "V1Subject",
):
    if not hasattr(client, name):
        setattr(client, name, type(name, (), {}))
"""

FIXTURE_SECTION = re.compile(r"^-+ fixtures defined from (\S+) -+$")
FIXTURE_LINE = re.compile(r"^([A-Za-z_]\w*)(?: \[[\w ]+\])? -- ")


class Venv:
    """A venv with kube-harness, kubetest and pytest-kubernetes; runs its pytest."""

    def __init__(self, path: Path):
        self.path = path
        self.python = path / "bin" / "python"

    def pytest(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.pop("VIRTUAL_ENV", None)
        return subprocess.run(
            [str(self.python), "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )


def _build(path: Path) -> None:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    python = path / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*install, "-e", str(REPO), *OTHERS], capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        pytest.fail(
            f"pip could not install kube-harness with {', '.join(OTHERS)}:\n"
            f"{done.stdout[-2000:]}{done.stderr[-3000:]}\n"
            "fix: the test needs PyPI (or a pip index set in pip.conf) the first time",
            pytrace=False,
        )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "_kubetest_compat.py").write_text(KUBETEST_SHIM)
    Path(site, "_kubetest_compat.pth").write_text("import _kubetest_compat\n")


@pytest.fixture(scope="session")
def plugins_venv(request: pytest.FixtureRequest) -> Venv:
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[
        :16
    ]
    base = request.config.cache.mkdir("plugin-coexistence")
    path = base / key
    with file_lock(base / f"{key}.lock"):  # xdist workers build it once
        if not (path / "ready").exists():
            _build(path)
            (path / "ready").write_text(" ".join(OTHERS) + "\n")
    return Venv(path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A test folder using one fixture of each plugin."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_with_kube_harness.py").write_text(
        "def test_uses_kube_harness(kube_api, cluster, namespace):\n    pass\n"
    )
    (tmp_path / "test_with_kubetest.py").write_text(
        "def test_uses_kubetest(kube, kubeconfig, kubecontext):\n    pass\n"
    )
    (tmp_path / "test_with_pytest_kubernetes.py").write_text(
        "def test_uses_pytest_kubernetes(k8s):\n    pass\n"
    )
    return tmp_path


def _fixtures_by_plugin(output: str) -> dict[str, list[str]]:
    """`pytest --fixtures` output as {defining module: [fixture names]}."""
    found: dict[str, list[str]] = {}
    section = None
    for line in output.splitlines():
        if match := FIXTURE_SECTION.match(line):
            section = found.setdefault(match.group(1), [])
        elif section is not None and (match := FIXTURE_LINE.match(line)):
            section.append(match.group(1))
    return found


def test_pytest_starts_with_every_plugins_options(plugins_venv: Venv, project: Path):
    helped = plugins_venv.pytest("--help", cwd=project)

    assert helped.returncode == 0, helped.stdout[-2000:] + helped.stderr[-3000:]
    options = set(re.findall(r"^ +(--[\w-]+)", helped.stdout, re.MULTILINE))
    assert {"--cluster-context", "--cluster-provider", "--resilience-spec"} <= options
    assert {"--kube-context", "--kube-config"} <= options  # kubetest's
    assert {"--k8s-provider", "--k8s-cluster-name"} <= options  # pytest-kubernetes's
    assert {"--cluster-name", "--kubeconfig"} <= options  # pytest-kind's, reused by us


def test_tests_using_either_plugins_fixtures_are_collected(plugins_venv: Venv, project: Path):
    collected = plugins_venv.pytest("--collect-only", "-q", cwd=project)

    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    for test in (
        "test_with_kube_harness.py::test_uses_kube_harness",
        "test_with_kubetest.py::test_uses_kubetest",
        "test_with_pytest_kubernetes.py::test_uses_pytest_kubernetes",
    ):
        assert test in collected.stdout.splitlines(), collected.stdout


def test_no_fixture_is_shadowed(plugins_venv: Venv, project: Path):
    listed = plugins_venv.pytest("--fixtures", "-v", cwd=project)

    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-2000:]
    by_plugin = _fixtures_by_plugin(listed.stdout)
    ours = {
        n
        for plugin, names in by_plugin.items()
        if plugin.startswith("harness.plugin")
        for n in names
    }
    assert {"kube_api", "cluster", "namespace", "deployed"} <= ours
    assert {"kube", "kubeconfig", "kubecontext"} <= set(by_plugin["kubetest.plugin"])
    assert "k8s" in by_plugin["pytest_kubernetes.plugin"]
    owners: dict[str, list[str]] = {}
    for plugin, names in by_plugin.items():
        for name in names:
            owners.setdefault(name, []).append(plugin)
    assert {n: p for n, p in owners.items() if len(p) > 1} == {}
