"""Run history: each run's key figures in reports/history/<run-id>.json, so trends need no
earlier run folders.

A CI job keeps only this folder between runs (the nightly workflow restores it before the run
and saves it after); a full run folder is large and usually gone. An entry holds just what
`trends.read_history` reads from a results.json (run id, start time, key figures) under its
own schema, and the folder keeps the newest `KEEP` entries: trends look back at most
`trends.HISTORY_LIMIT` runs, so older entries would never be read.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from harness.report.trends import HISTORY_LIMIT, RESULTS_FILE, KeyFigures, read_history

__all__ = ["HISTORY_DIR", "KEEP", "SCHEMA", "earlier_runs", "write_entry"]

HISTORY_DIR = "history"
SCHEMA = "kube-harness/history"
SCHEMA_VERSION = 1
KEEP = HISTORY_LIMIT


def write_entry(
    reports_root: Path, run_id: str, started: float | None, figures: KeyFigures
) -> Path | None:
    """Write the run's entry into reports_root/history/ and drop entries beyond the newest `KEEP`.

    A run that measured no key figures has nothing for trends and writes no entry (so a
    session of unit tests does not push real runs out).

    Returns:
        The entry written, or None.
    """
    # JSON has no NaN: a figure that could not be measured is left out, as if never measured.
    figures = {
        test: kept
        for test, values in figures.items()
        if (kept := {name: v for name, v in values.items() if math.isfinite(v)})
    }
    if not figures:
        return None
    folder = reports_root / HISTORY_DIR
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / f"{_file_name(run_id)}.json"
    document = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "run_id": run_id,
        "started": started,
        "key_figures": figures,
    }
    # Written beside and renamed: a job cancelled mid-write leaves no half entry to be cached.
    partial = folder / f".{entry.name}.{os.getpid()}"
    partial.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    partial.replace(entry)
    _prune(folder)
    return entry


def earlier_runs(reports_root: Path, run_dir: Path) -> list[Path]:
    """Every earlier run's record in `reports_root`, for `write_report`'s history.

    The entries of reports_root/history/ first, then the results.json of run folders that have
    no entry (reports written before the history existed). The run itself is left out; the
    report keeps the runs that started before it (the last `trends.HISTORY_LIMIT`).
    """
    here = run_dir.resolve()
    folder = reports_root / HISTORY_DIR
    entries = sorted(folder.glob("*.json")) if folder.is_dir() else []
    entries = [p for p in entries if p.stem != _file_name(here.name)]
    recorded = {p.stem for p in entries}
    folders = sorted(
        p / RESULTS_FILE
        for p in (reports_root.iterdir() if reports_root.is_dir() else ())
        if p.is_dir()
        and not p.is_symlink()
        and p.name != HISTORY_DIR
        and p.resolve() != here
        and _file_name(p.name) not in recorded
        and (p / RESULTS_FILE).is_file()
    )
    return [*entries, *folders]


def _prune(folder: Path) -> None:
    # Only readable entries count and go: a foreign file is the user's, and is reported instead.
    runs, _ = read_history(sorted(folder.glob("*.json")))
    for run in runs[:-KEEP]:
        (folder / f"{_file_name(run.run_id)}.json").unlink(missing_ok=True)


def _file_name(run_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", run_id)
