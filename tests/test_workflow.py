"""The nightly workflow users copy into their repositories: valid for GitHub, and wired to
the report the harness writes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml

from harness.report import HISTORY_DIR

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "nightly.yml"


@pytest.fixture(scope="module")
def actionlint() -> str:
    path = os.environ.get("ACTIONLINT") or shutil.which("actionlint")
    if not path or not Path(path).is_file():
        pytest.fail(
            "actionlint not found: run `make tools` (builds it into ~/.cache/kube-harness/tools) "
            "or set ACTIONLINT to its path"
        )
    return path


def test_nightly_workflow_passes_actionlint(actionlint: str) -> None:
    result = subprocess.run(
        [actionlint, "-no-color", str(WORKFLOW)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


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
