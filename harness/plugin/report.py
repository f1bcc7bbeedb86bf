"""The run's report, written once by the controller after every other sessionfinish, and
the diagnostics bundles named at the end of the terminal summary."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.plugin.cluster import tear_down_cluster
from harness.plugin.shared import DIAGNOSTICS_KEY, PHASE_REPORTS_KEY, RUN_KEY
from harness.report import SCREENSHOT_FILE, earlier_runs, screenshot, update_latest, write_report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    item.stash.setdefault(PHASE_REPORTS_KEY, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    bundles = config.stash.get(DIAGNOSTICS_KEY, [])
    if bundles:
        terminalreporter.write_sep("-", "kube-harness diagnostics")
        for path in bundles:
            terminalreporter.write_line(f"  {path}")


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """After every other sessionfinish (so pytest's JUnit XML exists): the run's report, then
    the cluster's teardown. xdist workers leave both to the controller."""
    result = yield
    if not hasattr(session.config, "workerinput"):
        try:
            _write_report(session.config)
        finally:
            tear_down_cluster(session.config)
    return result


def _write_report(config: pytest.Config) -> None:
    run, xml = config.stash[RUN_KEY], config.option.xmlpath  # xmlpath: --junitxml
    if not run.directory.is_dir() and not xml:
        return  # nothing recorded and no JUnit asked for: a plain unit-test session
    files = write_report(
        run.directory,
        history=earlier_runs(run.reports_root, run.directory),
        junit_xml=Path(xml) if xml else None,
    )
    update_latest(run.reports_root, files.directory)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reporter.ensure_newline()
    reporter.write_sep("-", f"kube-harness report: {files.status}")
    try:
        screenshot(files.html, files.directory / SCREENSHOT_FILE)
    except HarnessError as exc:
        reporter.write_line(f"  no screenshot: {exc.message}")
    for path in (files.html, files.markdown, files.json):
        reporter.write_line(f"  {path}")
    for problem in files.problems:
        reporter.write_line(f"  missing or unreadable: {problem}")
