"""The nightly workflow users copy into their repositories: valid for GitHub, and wired to
the report the harness writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import venv
from pathlib import Path, PurePosixPath

import pytest
import yaml

from harness.cluster.provider import ClusterProvider
from harness.report import HISTORY_DIR
from harness.report.history import write_entry

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
DEMO_SPEC = ROOT / "scenarios" / "demo-service.spec.yaml"


# What would point the installed harness back at this checkout or this pytest run.
@pytest.fixture(scope="module")
def actionlint() -> str:
    path = os.environ.get("ACTIONLINT") or shutil.which("actionlint")
    if not path or not Path(path).is_file():
        pytest.fail(
            "actionlint not found: run `make tools` (builds it into ~/.cache/kube-harness/tools) "
            "or set ACTIONLINT to its path"
        )
    return path


@pytest.mark.builds
def test_nightly_workflow_passes_actionlint(actionlint: str) -> None:
    result = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.builds
def test_actionlint_catches_a_broken_workflow(actionlint: str, tmp_path: Path) -> None:
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: [}"))
    result = subprocess.run(
        [actionlint, "-no-color", str(broken)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0


def test_nightly_runs_on_kind_and_keeps_the_runs_report() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["schedule"], "nightly needs a schedule"  # YAML 1.1 reads `on` as True
    steps = workflow["jobs"]["scenarios"]["steps"]
    run_step = next(s for s in steps if "harness run" in s.get("run", ""))
    assert "--cluster-provider=kind" in run_step["run"]
    assert '--run-id="$RUN_ID"' in run_step["run"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == "reports/${{ env.RUN_ID }}/"
    assert upload["if"] == "always()"
    summary = next(s for s in steps if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert "summary.md" in summary["run"] and summary["if"] == "always()"
    # The folder is published: its files are redacted first, also after a killed run.
    redact = next(s for s in steps if "harness report" in s.get("run", ""))
    assert redact["if"] == "always()" and steps.index(redact) < steps.index(upload)


def test_nightly_installs_kube_harness_and_runs_the_users_spec() -> None:
    """The service's repository is not a Python package: the workflow installs kube-harness
    (from PyPI, or the requirement or git URL given when started by hand) and runs its
    built-in suite against the repository's spec."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["scenarios"]
    given = workflow[True]["workflow_dispatch"]["inputs"]["harness"]
    assert given["default"] == "kube-harness"
    assert job["env"]["HARNESS_PACKAGE"] == "${{ inputs.harness || 'kube-harness' }}"
    install = next(s for s in job["steps"] if "pip install" in s.get("run", ""))
    assert install["run"] == 'python -m pip install "$HARNESS_PACKAGE"'
    run_step = next(s for s in job["steps"] if "harness run" in s.get("run", ""))
    assert run_step["run"].startswith('harness run "$RESILIENCE_SPEC" --')


def test_nightly_restores_and_saves_the_run_history_the_harness_writes() -> None:
    """reports/ does not survive the job: the history beside the run folders does, through the
    cache, restored before the run and saved after it even when the run fails."""
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["scenarios"]
    steps = job["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    reports_root = PurePosixPath(upload["with"]["path"]).parent  # reports/<run-id>/ -> reports
    assert job["env"]["HISTORY_PATH"] == str(reports_root / HISTORY_DIR)

    names = [s.get("uses", "").split("@")[0] or s.get("run", "") for s in steps]
    restore = steps[names.index("actions/cache/restore")]
    save = steps[names.index("actions/cache/save")]
    run = next(i for i, n in enumerate(names) if n.startswith("harness run"))
    assert names.index("actions/cache/restore") < run < names.index("actions/cache/save")
    assert restore["with"]["path"] == save["with"]["path"] == "${{ env.HISTORY_PATH }}"
    # A new entry per run, found by the next run by its prefix (one history per branch and spec).
    prefix = restore["with"]["restore-keys"]
    assert restore["with"]["key"].startswith(prefix)
    assert "${{ github.run_id }}" in restore["with"]["key"]
    assert "${{ github.ref_name }}" in prefix and "${{ env.RESILIENCE_SPEC }}" in prefix
    assert save["with"]["key"] == f"${{{{ steps.{restore['id']}.outputs.cache-primary-key }}}}"
    assert save["if"].startswith("always()") and "env.HISTORY_PATH" in save["if"]


# --- the workflow's steps, run in a team's repository ----------------------------------------


class WorkflowRun:
    """The steps of the nightly job run here as GitHub's runner runs them, in a team's
    repository: `run:` steps through `bash -e` with the job's environment, `uses:` steps by
    what their action does (checkout, setup-python, cache restore/save, upload-artifact), and
    `if:` conditions. An expression or action this emulation does not know fails the test:
    a change to the workflow must be taught here, not skipped."""

    def __init__(self, workspace: Path, cache: Path, artifacts: Path, env: dict[str, str]) -> None:
        self.workspace, self.cache, self.artifacts = workspace, cache, artifacts
        self.env = env
        self.outputs: dict[str, dict[str, str]] = {}
        self.failed = False
        self.log: list[tuple[str, int]] = []

    def value(self, expression: str) -> str:
        expression = expression.strip()
        if expression.startswith("env."):
            return self.env[expression[4:]]
        if expression.startswith("steps."):
            step, _, output = expression[6:].partition(".outputs.")
            return self.outputs[step][output]
        known = {
            "github.run_id": "4242",
            "github.run_attempt": "1",
            "github.ref_name": "main",
            "inputs.harness || 'kube-harness'": self.env["HARNESS_INPUT"],
        }
        assert expression in known, f"the workflow uses ${{{{ {expression} }}}}: teach it here"
        return known[expression]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{\{(.*?)\}\}", lambda m: self.value(m[1]), text)

    def condition(self, text: str | None) -> bool:
        if text is None:
            return not self.failed
        found = re.fullmatch(r"always\(\)(?: && hashFiles\(format\('(.*)', env\.(\w+)\)\) != '')?",
                             text.strip())  # fmt: skip
        assert found, f"the workflow's condition {text!r} is not known here: teach it"
        if found[1] is None:
            return True
        pattern = found[1].replace("{0}", self.env[found[2]])
        return any(self.workspace.glob(pattern))

    def step(self, step: dict) -> None:
        if not self.condition(step.get("if")):
            return
        name = step.get("name") or step.get("uses") or step["run"]
        if "run" in step:
            script = self.workspace.parent / "step.sh"
            script.write_text(step["run"])
            env = {k: self.expand(v) for k, v in step.get("env", {}).items()}
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                cwd=self.workspace, env={**self.env, **env}, timeout=1800, check=False,
            )  # fmt: skip
            self.log.append((name, done.returncode))
            self.failed |= done.returncode != 0
            return
        action = step["uses"].split("@")[0]
        given = {k: self.expand(str(v)) for k, v in step.get("with", {}).items()}
        getattr(self, "_" + action.replace("/", "_").replace("-", "_"))(step, given)
        self.log.append((name, 0))

    def _actions_checkout(self, step: dict, given: dict) -> None:
        assert any(self.workspace.iterdir()), "the team's repository is checked out already"

    def _actions_setup_python(self, step: dict, given: dict) -> None:
        venv.EnvBuilder(with_pip=True).create(self.workspace.parent / "python")
        self.env["PATH"] = f"{self.workspace.parent / 'python' / 'bin'}:{self.env['PATH']}"

    def _actions_cache_restore(self, step: dict, given: dict) -> None:
        matches = sorted(
            p for p in self.cache.iterdir() if p.name.startswith(given["restore-keys"])
        )
        if matches:
            shutil.copytree(matches[-1], self.workspace / given["path"], dirs_exist_ok=True)
        self.outputs[step["id"]] = {"cache-primary-key": given["key"]}

    def _actions_cache_save(self, step: dict, given: dict) -> None:
        shutil.copytree(self.workspace / given["path"], self.cache / given["key"])

    def _actions_upload_artifact(self, step: dict, given: dict) -> None:
        shutil.copytree(self.workspace / given["path"], self.artifacts / given["name"])


@pytest.fixture
def kind_only(cluster: ClusterProvider) -> ClusterProvider:
    if cluster.name != "kind":
        pytest.skip("the nightly workflow runs on kind: `make test` runs this in its kind part")
    return cluster


def test_the_workflow_runs_in_a_teams_repository(
    kind_only, cluster_options, kube_harness_wheel, installation_env, tmp_path
) -> None:
    """The workflow's steps, as GitHub runs them, in a repository laid out as a team's (its
    manifests, resilience.yaml, the workflow copied in): kube-harness is installed from this
    checkout's wheel (the workflow's `harness` input), the built-in suite runs on the kind
    cluster (narrowed to one scenario, and this session's cluster reused, through
    PYTEST_ADDOPTS), the summary reaches the run's page, the report is kept, and the run
    history is restored and saved for the next run."""
    workspace = tmp_path / "team-repo"
    shutil.copytree(ROOT / "manifests", workspace / "deploy")
    (workspace / "resilience.yaml").write_text(
        DEMO_SPEC.read_text().replace("../manifests/", "deploy/")
    )
    (workspace / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(WORKFLOW, workspace / ".github" / "workflows" / "nightly.yml")
    cache, artifacts = tmp_path / "cache", tmp_path / "artifacts"
    cache.mkdir()
    artifacts.mkdir()
    figures = {"test_killed_container_is_restarted[demo]": {"seconds": 5.0}}
    earlier = write_entry(tmp_path / "earlier", "nightly-4000-1", time.time() - 86400, figures)
    shutil.copytree(earlier.parent, cache / "kube-harness-history-main-resilience.yaml-4000-1")

    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["scenarios"]
    env = dict(installation_env)
    env |= {
        "HARNESS_INPUT": str(kube_harness_wheel),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "step-summary.md"),
        "GITHUB_WORKSPACE": str(workspace),
        "PYTEST_ADDOPTS": f"--cluster-name={cluster_options.name} "
        f"--cluster-workers={cluster_options.workers} --keep-cluster -k killed_container",
    }
    runner = WorkflowRun(workspace, cache, artifacts, env)
    runner.env |= {k: runner.expand(v) for k, v in job["env"].items()}
    for step in job["steps"]:
        runner.step(step)

    assert not runner.failed, runner.log
    run_id = runner.env["RUN_ID"]
    assert run_id == "nightly-4242-1"
    assert (tmp_path / "step-summary.md").read_text().startswith("#"), "no summary shown"
    kept = artifacts / f"kube-harness-{run_id}"
    assert (kept / "index.html").is_file() and (kept / "junit.xml").is_file()
    saved = cache / "kube-harness-history-main-resilience.yaml-4242-1"
    assert {p.name for p in saved.glob("*.json")} >= {"nightly-4000-1.json", f"{run_id}.json"}
