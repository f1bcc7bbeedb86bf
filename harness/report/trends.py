"""Trends: how each key figure of each test moved over earlier runs, so a regression shows.

Key figures are per test (by test folder name, stable across runs): the resilience figures,
the count of failed verdicts, the numeric measurements the scenario recorded and, for the
capacity scenario, its capacity figures. A figure got "worse" when it moved in its bad
direction by more than `TOLERANCE` of its previous value and by at least the figure's own
minimum change (a second, a request), so noise does not raise alarms.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.errors import InvalidConfiguration
from harness.user_files import read_text

Better = Literal["lower", "higher", ""]
Verdict = Literal["worse", "better", "same", "changed", "new"]
KeyFigures = dict[str, dict[str, float]]

TOLERANCE = 0.2
HISTORY_LIMIT = 20
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class Figure:
    """How to name, show and compare one key figure.

    Args:
        min_change: the smallest change that counts (noise below it).
        relative: whether a change must also exceed `TOLERANCE` of the previous value (not
            for percentages near 100, where 99.9 to 99.0 matters).
    """

    title: str
    unit: str = ""
    better: Better = ""
    min_change: float = 0.0
    relative: bool = True


FIGURES: dict[str, Figure] = {
    "verdicts_failed": Figure("failed verdicts", "", "lower", 1),
    "time_to_detect_s": Figure("time to detect", "s", "lower", 1.0),
    "time_to_recover_s": Figure("time to recover", "s", "lower", 1.0),
    "failed_requests": Figure("failed requests from the disturbance on", "", "lower", 1),
    "availability_pct": Figure("availability", "%", "higher", 0.5, relative=False),
    "restarts": Figure("restarts", "", "lower", 1),
    "first_scale_up_s": Figure("load rise to first scale-up", "s", "lower", 1.0),
    "steady_state_s": Figure("load rise to HPA steady state", "s", "lower", 2.0),
    "p95_ms": Figure("p95 latency", "ms", "lower", 20.0),
    "rps": Figure("requests/s", "req/s", "", 1.0),
    "sustainable_rps_per_replica": Figure("sustainable req/s per replica", "req/s", "higher", 0.5),
    "sustainable_rps": Figure("sustainable req/s at the SLO", "req/s", "higher", 1.0),
    "knee_rps": Figure("knee (req/s where latency breaks)", "req/s", "higher", 1.0),
    "peak_replicas": Figure("peak replicas", "", "", 1),
}
MEASUREMENT_PREFIX = "measured: "
_LOWER_WORDS = ("seconds", "failed", "error", "restart", "latency", "p95", "p99")


def describe(name: str) -> Figure:
    """The figure's description; a scenario's own measurement is judged by its wording."""
    if name in FIGURES:
        return FIGURES[name]
    title = name.removeprefix(MEASUREMENT_PREFIX)
    lower = any(word in title.lower() for word in _LOWER_WORDS)
    return Figure(title, "s" if "seconds" in title else "", "lower" if lower else "")


@dataclass(frozen=True)
class Trend:
    """One figure of one test over the runs, oldest first; the current run is last."""

    test_id: str
    label: str
    figure: str
    runs: tuple[str, ...]
    values: tuple[float | None, ...]

    @property
    def current(self) -> float | None:
        return self.values[-1]

    @property
    def previous(self) -> float | None:
        return next((v for v in reversed(self.values[:-1]) if v is not None), None)

    @property
    def change(self) -> float | None:
        """Relative change from the previous value (None when there is none or it was 0)."""
        if self.current is None or not self.previous:
            return None
        return (self.current - self.previous) / abs(self.previous)

    @property
    def verdict(self) -> Verdict:
        current, previous = self.current, self.previous
        if previous is None or current is None:
            return "new"
        info = describe(self.figure)
        delta = current - previous
        significant = (
            delta != 0
            and abs(delta) >= info.min_change
            and (not info.relative or previous == 0 or abs(delta) / abs(previous) > TOLERANCE)
        )
        if not significant:
            return "same"
        if not info.better:
            return "changed"
        return "worse" if (delta > 0) == (info.better == "lower") else "better"


@dataclass(frozen=True)
class PastRun:
    """An earlier run's key figures, as its results.json has them."""

    run_id: str
    started: float | None
    figures: KeyFigures


def read_history(paths: Sequence[Path]) -> tuple[list[PastRun], list[str]]:
    """Earlier runs from their results.json (a file, or a run folder holding one) or their
    entries in reports/history/ (see harness.report.history).

    Returns:
        The runs, oldest first, and what could not be read.
    """
    runs, problems = [], []
    for path in paths:
        file = path / RESULTS_FILE if path.is_dir() else path
        try:
            data = json.loads(read_text(file, "file"))
            if not str(data.get("schema", "")).startswith("kube-harness/"):
                raise KeyError("schema")
            started = data.get("started")
            runs.append(
                PastRun(
                    run_id=str(data["run_id"]),
                    started=float(started) if started is not None else None,
                    figures={
                        test: {k: float(v) for k, v in figures.items()}
                        for test, figures in data["key_figures"].items()
                    },
                )
            )
        except InvalidConfiguration as exc:  # a FIFO, /dev/zero, a folder, not UTF-8...
            problems.append(f"history {file}: unreadable ({exc.message}), skipped")
        except json.JSONDecodeError as exc:
            problems.append(f"history {file}: unreadable ({type(exc).__name__}), skipped")
        except (KeyError, TypeError, ValueError, AttributeError):
            problems.append(
                f"history {file}: not a kube-harness results.json or history entry, skipped"
            )
    return sorted(runs, key=_when), problems


def _when(run: PastRun) -> tuple[float, str]:
    # Run ids sort by time when the harness made them; a run's start time is better still.
    return (run.started if run.started is not None else 0.0, run.run_id)


def trends(
    run_id: str,
    started: float | None,
    figures: KeyFigures,
    labels: Mapping[str, str],
    history: Sequence[PastRun],
    *,
    limit: int = HISTORY_LIMIT,
) -> list[Trend]:
    """Every figure of the current run that one of the `limit` runs before it also measured.

    Runs that started after this one (a report rebuilt for an old run) are left out.
    """
    past = [
        run
        for run in history
        if run.run_id != run_id
        and (started is None or run.started is None or run.started < started)
    ][-limit:]
    out = []
    for test_id, current in figures.items():
        for name, value in current.items():
            before = tuple(run.figures.get(test_id, {}).get(name) for run in past)
            if all(v is None for v in before):
                continue
            out.append(
                Trend(
                    test_id=test_id,
                    label=labels.get(test_id, test_id),
                    figure=name,
                    runs=(*(run.run_id for run in past), run_id),
                    values=(*before, value),
                )
            )
    return out
