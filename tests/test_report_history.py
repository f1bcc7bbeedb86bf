"""The run history in reports/history/: every report writes its run's entry, and a report folder
holding only the history (as in CI, where run folders do not survive the job) shows trends."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.report import HISTORY_DIR, earlier_runs, write_report
from harness.report.history import KEEP, SCHEMA, write_entry

RUNS = Path(__file__).parent / "data" / "runs"
DELETED_POD = "scenarios.test_self_healing.py__test_deleted_pod_is_replaced_demo"
DAY = 86400.0


def copy_run(reports: Path, run_id: str) -> Path:
    return Path(shutil.copytree(RUNS / "valid-suite", reports / run_id))


def rewrite(entry: Path, *, days_earlier: float, **figures: float) -> None:
    """Make a history entry look like a run of `days_earlier` days before, with `figures`."""
    data = json.loads(entry.read_text())
    data["started"] -= days_earlier * DAY
    data["key_figures"][DELETED_POD].update(figures)
    entry.write_text(json.dumps(data))


def test_a_run_writes_its_key_figures_into_the_history(tmp_path):
    reports = tmp_path / "reports"
    files = write_report(copy_run(reports, "20261122-030916-aaaa"))

    entry = reports / HISTORY_DIR / "20261122-030916-aaaa.json"
    assert files.history_entry == entry
    data = json.loads(entry.read_text())
    results = json.loads(files.json.read_text())
    assert data == {
        "schema": SCHEMA,
        "version": 1,
        "run_id": "20261122-030916-aaaa",
        "started": results["started"],
        "key_figures": results["key_figures"],
    }
    assert entry.stat().st_size < files.json.stat().st_size / 4  # only what trends read


def test_a_fresh_reports_folder_with_only_the_history_shows_the_trend(tmp_path):
    # Two nightly runs in jobs of their own: only reports/history/ is carried over.
    earlier_job = tmp_path / "job-1" / "reports"
    for run_id, days, recover in (("night-1", 2, 1.0), ("night-2", 1, 1.2)):
        entry = write_report(copy_run(earlier_job, run_id)).history_entry
        rewrite(entry, days_earlier=days, time_to_recover_s=recover)
    reports = tmp_path / "job-3" / "reports"
    shutil.copytree(earlier_job / HISTORY_DIR, reports / HISTORY_DIR)
    run = copy_run(reports, "night-3")

    history = earlier_runs(reports, run)
    files = write_report(run, history=history)

    assert [p.name for p in history] == ["night-1.json", "night-2.json"]
    assert not files.problems
    summary = files.markdown.read_text()
    assert "### Trends over 3 runs" in summary
    assert "| pod deleted | time to recover | 1.2 s | 3.0 s | ⚠️ worse (+147%) |" in summary
    html = files.html.read_text()
    assert "Trends over 3 runs" in html
    assert "From night-1 to night-3." in html
    assert 'aria-label="trend"' in html  # the trend line of each figure
    assert sorted(p.name for p in (reports / HISTORY_DIR).iterdir()) == [
        "night-1.json",
        "night-2.json",
        "night-3.json",
    ]


def test_the_history_keeps_the_newest_runs_only(tmp_path):
    figures = {"t": {"restarts": 0.0}}
    for n in range(KEEP + 3):
        write_entry(tmp_path, f"run-{n:03}", 1000.0 + n, figures)

    kept = sorted(p.stem for p in (tmp_path / HISTORY_DIR).iterdir())
    assert kept == [f"run-{n:03}" for n in range(3, KEEP + 3)]


def test_a_run_without_key_figures_writes_no_entry(tmp_path):
    assert write_entry(tmp_path, "unit-tests", 1000.0, {}) is None
    assert write_entry(tmp_path, "nan", 1000.0, {"t": {"p95_ms": float("nan")}}) is None
    assert not (tmp_path / HISTORY_DIR).exists()


def test_corrupt_or_foreign_history_files_are_reported_and_skipped(tmp_path):
    reports = tmp_path / "reports"
    entry = write_report(copy_run(reports, "night-1")).history_entry
    rewrite(entry, days_earlier=1, time_to_recover_s=1.0)
    folder = reports / HISTORY_DIR
    (folder / "broken.json").write_text('{"schema": "kube-harness/history", "run_')
    (folder / "foreign.json").write_text(json.dumps({"schema": "other", "run_id": "x"}))
    (folder / "no-figures.json").write_text(json.dumps({"schema": SCHEMA, "run_id": "y"}))
    (folder / "README.txt").write_text("not an entry")
    run = copy_run(reports, "night-2")

    files = write_report(run, history=earlier_runs(reports, run))

    problems = "\n".join(files.problems)
    assert "broken.json: unreadable (JSONDecodeError), skipped" in problems
    assert "foreign.json: not a kube-harness results.json or history entry, skipped" in problems
    assert "no-figures.json: not a kube-harness" in problems
    assert "Trends over 2 runs" in files.markdown.read_text()
    # The user's files are left for them to look at, never deleted by pruning.
    assert {"broken.json", "foreign.json", "no-figures.json", "README.txt"} <= {
        p.name for p in folder.iterdir()
    }
