"""Capacity and resilience reports for a run: reports/<run-id>/{index.html,summary.md,results.json},
and the run's entry in reports/history/ that later runs' trends read (see harness.report.history).

Reporters render, observers record: everything here reads a finished run folder (result.json,
timeline.jsonl and load-N/load-events.jsonl of each test) and never talks to a cluster, so a
report can be rebuilt at any time with `harness report RUN_DIR`.

Example:
    >>> files = write_report(run.directory, history=earlier_runs(run.reports_root, run.directory),
    ...                      junit_xml=Path("junit.xml"))             # doctest: +SKIP
    >>> update_latest(run.reports_root, run.directory)              # doctest: +SKIP
    >>> screenshot(files.html, files.directory / SCREENSHOT_FILE)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.assertions import json_safe
from harness.commands import run as run_command
from harness.errors import HarnessError, InvalidConfiguration
from harness.report.document import RunStatus, build
from harness.report.history import HISTORY_DIR, earlier_runs, write_entry
from harness.report.html import render_html
from harness.report.redact import redact_folder, write_redacted_junit
from harness.report.render import render_json, render_markdown, write_text
from harness.report.trends import RESULTS_FILE

__all__ = [
    "HISTORY_DIR",
    "SCREENSHOT_FILE",
    "ReportFiles",
    "earlier_runs",
    "screenshot",
    "update_latest",
    "write_report",
]

HTML_FILE = "index.html"
MARKDOWN_FILE = "summary.md"
JUNIT_FILE = "junit.xml"
SCREENSHOT_FILE = "index.png"
LATEST = "latest"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT_TIMEOUT_S = 90
# Chromium renders at most this tall a page into one screenshot.
MAX_SCREENSHOT_HEIGHT = 16000


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote, and the run's overall status as the report sees it."""

    directory: Path
    html: Path
    markdown: Path
    json: Path
    junit: Path | None
    status: RunStatus
    problems: tuple[str, ...]
    history_entry: Path | None = None


def write_report(
    run_dir: Path, *, history: Sequence[Path] = (), junit_xml: Path | None = None
) -> ReportFiles:
    """Write index.html, summary.md and results.json into `run_dir` (created if missing),
    after masking credentials in every file the run left there (`redact_folder`: the folder
    is published whole).

    Also writes the run's key figures into the history beside the run folder
    (`run_dir/../history/<run-id>.json`, the newest `history.KEEP` kept), for later trends.
    Never fails on what the run recorded: missing or broken files make a partial report that
    lists them. A folder with no tests, or with tests that recorded but judged nothing, gets
    a report that says so.

    Args:
        run_dir: reports/<run-id>/ (or the reports/latest link).
        history: earlier runs' history entries or results.json files (or their run folders),
            for trends; `earlier_runs` finds them.
        junit_xml: pytest's JUnit XML of this run; copied into the folder as junit.xml
            (redacted) and used for the outcome of tests that wrote no verdicts.

    Returns:
        The files written; `problems` lists what the report could not read.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir = run_dir.resolve()  # reports/latest names the run it points at
    redact_folder(run_dir)  # the raw files (diagnostics, logs, journals) are published too
    junit = None
    if junit_xml is not None and junit_xml.is_file():
        junit = run_dir / JUNIT_FILE
        if junit_xml.resolve() != junit.resolve():
            write_redacted_junit(junit_xml, junit)
    # A JUnit XML that is missing is read anyway, so the report says it is missing.
    report = build(run_dir, history=history, junit_xml=junit or junit_xml)
    document = json.dumps(json_safe(render_json(report)), indent=2, allow_nan=False)
    entry = write_entry(run_dir.parent, report.run_id, report.started, report.key_figures())
    return ReportFiles(
        directory=run_dir,
        html=write_text(run_dir / HTML_FILE, render_html(report)),
        markdown=write_text(run_dir / MARKDOWN_FILE, render_markdown(report)),
        json=write_text(run_dir / RESULTS_FILE, document + "\n"),
        junit=junit,
        status=report.status,
        problems=report.problems
        + tuple(f"{v.record.test_id}: {p}" for v in report.tests for p in v.problems),
        history_entry=entry,
    )


def update_latest(reports_root: Path, run_dir: Path) -> Path:
    """Point reports/latest at `run_dir`: call it for the run that just finished.

    The link is relative (the reports folder can be moved or archived) and replaced
    atomically (a reader never finds it missing).

    Raises:
        HarnessError: `latest` exists and is not a symbolic link.
    """
    link = reports_root / LATEST
    if link.exists() and not link.is_symlink():
        raise HarnessError(
            f"{link} exists and is not a symbolic link",
            fix=f"remove or rename {link}; the harness keeps it as a link to the newest run",
        )
    reports_root.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(run_dir.resolve(), reports_root.resolve())
    partial = reports_root / f".{LATEST}.{os.getpid()}"
    partial.unlink(missing_ok=True)
    partial.symlink_to(target, target_is_directory=True)
    partial.replace(link)
    return link


def screenshot(
    html: Path,
    png: Path,
    *,
    width: int = 1280,
    height: int | None = None,
    scale: float = 1.0,
    browser: str | None = None,
) -> Path:
    """Render `html` in headless Chromium and save what it shows as `png`.

    Args:
        width: the window width in CSS pixels.
        height: the window height; default: an estimate of the page's full height from its
            charts and table rows, so the charts are in the picture.
        scale: device pixels per CSS pixel (0.5 makes a thumbnail of the same layout).
        browser: the Chromium binary (default: the first of `BROWSERS` on the PATH).

    Raises:
        InvalidConfiguration: no Chromium found.
        CommandFailed: Chromium failed or wrote no picture.
    """
    binary = browser or next(filter(None, map(shutil.which, BROWSERS)), None)
    if binary is None:
        raise InvalidConfiguration(
            f"no headless Chromium found (tried {', '.join(BROWSERS)})",
            fix="install it (Debian: apt-get install chromium) or pass browser=PATH",
        )
    height = height or page_height(html.read_text(encoding="utf-8"))
    png.unlink(missing_ok=True)
    run_command(
        [
            binary,
            "--headless",
            "--no-sandbox",  # root in containers and CI has no user namespace sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--force-device-scale-factor={scale:g}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ],
        timeout=SCREENSHOT_TIMEOUT_S,
        fix="run the same command by hand to see Chromium's own error",
    )
    if not png.is_file():
        raise HarnessError(
            f"Chromium wrote no screenshot of {html}", fix="check that the page opens in Chromium"
        )
    return png


def page_height(html: str) -> int:
    """A generous estimate of the rendered page's height, in CSS pixels."""
    charts = sum(int(h) for h in re.findall(r'<svg [^>]*?height="(\d+)"', html) if int(h) > 40)
    rows = html.count("<tr")
    sections = html.count("<h2") + html.count("<h3") + html.count("<li")
    return min(MAX_SCREENSHOT_HEIGHT, 400 + charts + 27 * rows + 40 * sections)
