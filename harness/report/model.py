"""A run folder read back as typed records: what each test judged and what it recorded.

Tolerant by design: a missing or unreadable file becomes an entry in `problems` (of the test
or of the run) and everything else is still read, so a broken run yields a partial report
that says what is missing rather than a crash. Strings are redacted on the way in
(`harness.report.redact`), and files that may hold credentials (diagnostics, logs, chaos
journals) are never opened, only linked.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from harness.errors import InvalidConfiguration
from harness.load.merge import merge_seconds
from harness.load.result import EndpointStats, FailedRequest, SeriesPoint
from harness.load.runner import EVENTS_FILE
from harness.observe import Entry, Timeline
from harness.report.redact import redact, redact_value
from harness.user_files import read_text

Status = Literal["passed", "failed", "skipped", "unknown"]

RESULT_FILE = "result.json"
TIMELINE_FILE = "timeline.jsonl"
DIAGNOSTICS_DIR = "diagnostics"
MESSAGE_LIMIT = 500
# Records (timeline, load events, JUnit XML) of a day-long run are tens of megabytes; read
# through `read_text`, a FIFO or /dev/zero in their place is refused instead of read forever.
MAX_RECORD_BYTES = 256 * 1024 * 1024
# What makes a status worse when JUnit lists one test more than once (call, then teardown).
_SEVERITY = {"unknown": 0, "passed": 1, "skipped": 2, "failed": 3}


@dataclass(frozen=True)
class VerdictRecord:
    """One promise judged by a scenario, as its result.json has it."""

    name: str
    measured: float | None
    limit: float | None
    unit: str
    status: str
    note: str = ""
    since: float | None = None
    until: float | None = None
    why: str = ""  # what in the manifests made it fail (harness.workload's findings)

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def explanation(self) -> str:
        """The note and the finding, as one text for reports."""
        return "; ".join(filter(None, [self.note, f"why: {self.why}" if self.why else ""]))


@dataclass(frozen=True)
class LoadRecord:
    """One load run of a test, read from its load-events.jsonl.

    `total` is None when Locust ended without writing its summary (killed, crashed).
    """

    name: str
    started: float | None
    ended: float | None
    series: tuple[SeriesPoint, ...]
    failures: tuple[FailedRequest, ...]
    total: EndpointStats | None

    def requests_between(self, start: float, end: float) -> tuple[int, int]:
        """Requests completed and failed in the seconds that overlap [start, end]."""
        seconds = [p for p in self.series if p.t + 1 > start and p.t <= end]
        return sum(p.requests for p in seconds), sum(p.failures for p in seconds)


@dataclass(frozen=True)
class Outcome:
    """What pytest's JUnit XML says about one test."""

    status: Status
    duration_s: float | None = None
    message: str = ""


@dataclass(frozen=True)
class TestRecord:
    """Everything one test folder (reports/<run-id>/<test-id>/) holds."""

    __test__ = False  # not a pytest test class, despite its name

    test_id: str
    directory: Path
    status: Status
    scenario: str | None = None
    verdicts: tuple[VerdictRecord, ...] = ()
    measurements: Mapping[str, Any] = field(default_factory=dict)
    timeline: Timeline = field(default_factory=lambda: Timeline([]))
    loads: tuple[LoadRecord, ...] = ()
    diagnostics: Path | None = None
    outcome: Outcome | None = None
    problems: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """A short human name: the scenario's, else the test's own name without its module."""
        return self.scenario or self.test_id.rpartition("__")[2]

    @property
    def judged(self) -> bool:
        """True when the test wrote verdicts (a scenario or experiment that reached judging)."""
        return self.scenario is not None


@dataclass(frozen=True)
class JUnitSummary:
    """Counts and failures from pytest's JUnit XML, and each test's outcome by folder key."""

    path: Path
    tests: int
    passed: int
    failed: int
    skipped: int
    failures: tuple[tuple[str, str], ...]
    outcomes: Mapping[str, Outcome]


@dataclass(frozen=True)
class RunRecord:
    """One run folder: its tests, the JUnit summary when given, and what could not be read."""

    run_id: str
    directory: Path
    tests: tuple[TestRecord, ...]
    junit: JUnitSummary | None = None
    problems: tuple[str, ...] = ()


def read_run(run_dir: Path, *, junit_xml: Path | None = None) -> RunRecord:
    """Read a run folder (reports/<run-id>/) into a `RunRecord`; never raises on bad content.

    Args:
        run_dir: the run's folder; a missing folder gives an empty record with a problem.
        junit_xml: pytest's JUnit XML for the run, for outcomes of tests without verdicts.

    Example:
        >>> run = read_run(Path("reports/20261123-032130-1f50"))  # doctest: +SKIP
        >>> [(t.label, t.status) for t in run.tests]              # doctest: +SKIP
        [('hpa scaling', 'failed'), ('scenarios.test_probes.py__...', 'unknown')]
    """
    problems: list[str] = []
    if not run_dir.is_dir():
        problems.append(f"run folder {run_dir} does not exist: nothing was recorded")
    junit = None
    if junit_xml is not None:
        junit, junit_problem = _read_junit(junit_xml)
        if junit_problem:
            problems.append(junit_problem)
    folders = sorted(
        p
        for p in (run_dir.iterdir() if run_dir.is_dir() else ())
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    outcomes = junit.outcomes if junit else {}
    tests = tuple(read_test(folder, outcomes.get(folder_key(folder.name))) for folder in folders)
    return RunRecord(run_dir.name, run_dir, tests, junit, tuple(problems))


def read_test(directory: Path, outcome: Outcome | None = None) -> TestRecord:
    """Read one test folder; what is missing or broken goes to `problems`."""
    problems: list[str] = []
    result, problem = _read_result(directory / RESULT_FILE)
    if problem:
        problems.append(problem)
    timeline, problem = _read_timeline(directory / TIMELINE_FILE)
    if problem:
        problems.append(problem)
    loads = []
    for folder in sorted(directory.glob("load-*"), key=_load_number):
        load, problem = _read_load(folder)
        loads.append(load)
        if problem:
            problems.append(problem)
    diagnostics = directory / DIAGNOSTICS_DIR
    has_diagnostics = diagnostics.is_dir()
    status = _status(result, outcome, has_diagnostics)
    recorded = (directory / RESULT_FILE).exists() or timeline.entries or loads or has_diagnostics
    if not recorded:
        problems.append("nothing recorded: the folder holds no result, timeline or load record")
    elif result is None and status == "failed" and not _result_explained(problems):
        see = f" (see {DIAGNOSTICS_DIR}/)" if has_diagnostics else ""
        problems.append(f"{RESULT_FILE} missing: the test failed before judging{see}")
    elif result is None and status == "unknown" and not _result_explained(problems):
        problems.append(
            f"{RESULT_FILE} missing: nothing was judged (not a scenario, or it stopped before "
            "judging; pass the JUnit XML to know which)"
        )
    result = result or {}
    verdicts = tuple(_verdicts(result.get("verdicts"), problems))
    measurements = result.get("measurements")
    return TestRecord(
        test_id=directory.name,
        directory=directory,
        status=status,
        scenario=redact(str(result["scenario"])) if "scenario" in result else None,
        verdicts=verdicts,
        measurements=redact_value(measurements if isinstance(measurements, dict) else {}),
        timeline=timeline,
        loads=tuple(loads),
        diagnostics=diagnostics if has_diagnostics else None,
        outcome=outcome,
        problems=tuple(problems),
    )


def _result_explained(problems: list[str]) -> bool:
    """True when a problem already explains the result file (unreadable rather than missing)."""
    return any(p.startswith(RESULT_FILE) for p in problems)


def folder_key(name: str) -> str:
    """A key that a test folder's name and its JUnit classname+name share.

    Folders are named from pytest node ids (`harness.run.test_dir_name`), JUnit from dotted
    module paths without ".py"; dropping both differences and every separator matches them.
    """
    return re.sub(r"[^a-z0-9]", "", name.lower().replace(".py__", "__"))


def _status(result: dict[str, Any] | None, outcome: Outcome | None, diagnostics: bool) -> Status:
    """The verdicts' outcome, unless pytest saw worse (an error in teardown, after judging)."""
    judged: Status | None = None
    if result is not None and isinstance(result.get("passed"), bool):
        judged = "passed" if result["passed"] else "failed"
    candidates = [s for s in (judged, outcome.status if outcome else None) if s is not None]
    if candidates:
        return max(candidates, key=_SEVERITY.__getitem__)
    # The harness collects diagnostics only for failing tests.
    return "failed" if diagnostics else "unknown"


def _read_result(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.exists():
        return None, None
    try:
        # json accepts the Infinity that result.json files of older runs hold.
        data = json.loads(read_text(path, "file", max_bytes=MAX_RECORD_BYTES))
    except (InvalidConfiguration, json.JSONDecodeError) as exc:
        return None, f"{RESULT_FILE} unreadable ({_short_error(exc)}): verdicts not shown"
    if not isinstance(data, dict):
        return None, f"{RESULT_FILE} is not a JSON object: verdicts not shown"
    return data, None


def _verdicts(raw: Any, problems: list[str]) -> Iterator[VerdictRecord]:
    if raw is None:
        return
    if not isinstance(raw, list):
        problems.append(f"{RESULT_FILE}: `verdicts` is not a list: verdicts not shown")
        return
    skipped = 0
    for item in raw:
        try:
            yield VerdictRecord(
                name=redact(str(item["name"])),
                measured=_number(item.get("measured")),
                limit=_number(item.get("limit")),
                unit=str(item.get("unit") or ""),
                status=str(item["status"]),
                note=redact(str(item.get("note") or "")),
                since=_number(item.get("since")),
                until=_number(item.get("until")),
                why=redact(str(item.get("why") or "")),
            )
        except (KeyError, TypeError, AttributeError):
            skipped += 1
    if skipped:
        problems.append(f"{RESULT_FILE}: {skipped} verdict(s) without a name or status skipped")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSON-lines file and how many lines were not one.

    Raises:
        InvalidConfiguration: the file cannot be read (see `read_text`).
    """
    records, bad = [], 0
    text = read_text(path, "file", max_bytes=MAX_RECORD_BYTES, errors="replace")
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _read_timeline(path: Path) -> tuple[Timeline, str | None]:
    if not path.exists():
        return Timeline([]), None
    try:
        records, bad = _read_jsonl(path)
    except InvalidConfiguration as exc:
        return Timeline([]), f"{TIMELINE_FILE} unreadable ({_short_error(exc)}): no chart"
    entries = []
    for record in records:
        entry = _entry(record)
        if entry is None:
            bad += 1
        else:
            entries.append(entry)
    problem = f"{TIMELINE_FILE}: {bad} unreadable line(s) skipped" if bad else None
    return Timeline(entries), problem


def _entry(record: dict[str, Any]) -> Entry | None:
    t, kind, name = record.get("t"), record.get("kind"), record.get("name")
    state = record.get("state") or {}
    if _number(t) is None or not isinstance(kind, str) or not isinstance(state, dict):
        return None
    if kind == "Mark":
        name, state = redact(str(name)), redact_value(state)
    elif kind == "Event":
        state = {k: v for k, v in state.items() if k != "message"}  # free text from anyone
    return Entry(float(t), str(record.get("type") or ""), kind, str(name or ""), state)


def _load_number(folder: Path) -> tuple[int, str]:
    number = folder.name.removeprefix("load-")
    return (int(number) if number.isdigit() else 0, folder.name)


def _read_load(folder: Path) -> tuple[LoadRecord, str | None]:
    path = folder / EVENTS_FILE
    empty = LoadRecord(folder.name, None, None, (), (), None)
    if not path.exists():
        return empty, f"{folder.name}/{EVENTS_FILE} missing: this load run is not shown"
    try:
        records, bad = _read_jsonl(path)
    except InvalidConfiguration as exc:
        return empty, f"{folder.name}/{EVENTS_FILE} unreadable ({_short_error(exc)})"
    seconds, failures = [], []
    started = total = summary_t = None
    for record in records:
        try:
            match record.get("kind"):
                case "start":
                    started = float(record["t"])
                case "second":
                    merge_seconds([record])  # readable on its own, or counted as bad
                    seconds.append(record)
                case "failure":
                    failure = FailedRequest.from_record(record)
                    failures.append(
                        replace(failure, name=redact(failure.name), error=redact(failure.error))
                    )
                case "summary":
                    total = EndpointStats.from_record(record["total"])
                    summary_t = float(record["t"])
        except (KeyError, TypeError, ValueError, AttributeError):
            bad += 1
    series = merge_seconds(seconds)  # the seconds of a master's workers add up
    if started is None and series:
        started = float(series[0].t)
    ended = summary_t if summary_t is not None else (series[-1].t + 1.0 if series else None)
    issues = [f"{bad} unreadable record(s) skipped"] if bad else []
    if total is None:
        issues.append("no summary (Locust ended early): totals come from the per-second series")
    problem = f"{folder.name}: {'; '.join(issues)}" if issues else None
    return LoadRecord(folder.name, started, ended, tuple(series), tuple(failures), total), problem


def _read_junit(path: Path) -> tuple[JUnitSummary | None, str | None]:
    try:
        root = ElementTree.fromstring(read_text(path, "file", max_bytes=MAX_RECORD_BYTES))
    except (InvalidConfiguration, ElementTree.ParseError) as exc:
        return None, f"JUnit XML {path.name} unreadable ({_short_error(exc)}): outcomes not shown"
    outcomes: dict[str, Outcome] = {}
    names: dict[str, str] = {}
    for case in root.iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        key = folder_key(f"{classname}{name}")
        names[key] = f"{classname}::{name}" if classname else name
        outcome = _case_outcome(case)
        previous = outcomes.get(key)
        if previous is None or _SEVERITY[outcome.status] > _SEVERITY[previous.status]:
            outcomes[key] = outcome
    statuses = [o.status for o in outcomes.values()]
    failures = tuple((names[key], o.message) for key, o in outcomes.items() if o.status == "failed")
    return (
        JUnitSummary(
            path=path,
            tests=len(outcomes),
            passed=statuses.count("passed"),
            failed=statuses.count("failed"),
            skipped=statuses.count("skipped"),
            failures=failures,
            outcomes=outcomes,
        ),
        None,
    )


def _case_outcome(case: ElementTree.Element) -> Outcome:
    duration = _number(_float_or_none(case.get("time")))
    for tag, status in (("failure", "failed"), ("error", "failed"), ("skipped", "skipped")):
        found = case.find(tag)
        if found is not None:
            message = redact(found.get("message") or (found.text or "").strip())
            return Outcome(status, duration, _cut(message))
    return Outcome("passed", duration)


def _float_or_none(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_error(exc: BaseException) -> str:
    if isinstance(exc, InvalidConfiguration):  # names the file and what is wrong with it
        return _cut(exc.message)
    return _cut(f"{type(exc).__name__}: {exc}", 160)
