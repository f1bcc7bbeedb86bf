"""What a load run measured: the records the Locust side wrote, read back as plain objects.

Every time is `time.time()` seconds (the cluster timeline's clock), so a question like
"which requests failed while pod X was terminating" is `result.failures_between(t0, t1)`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SeriesPoint:
    """One wall-clock second: requests completed in it, failures, latency, users at its end,
    and which pods and versions answered them."""

    t: int
    requests: int
    failures: int
    users: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    pods: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        """Requests per second (the point covers one second)."""
        return float(self.requests)

    @property
    def failures_per_s(self) -> float:
        return float(self.failures)


@dataclass(frozen=True)
class FailedRequest:
    """One failed request: when it started and ended, where it went (the pod and version
    its answer named, if it got one), what went wrong."""

    t: float
    end: float
    method: str
    name: str
    error: str
    pod: str | None
    version: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> FailedRequest:
        return cls(
            t=record["t"],
            end=record["end"],
            method=record["method"],
            name=record["name"],
            error=record["error"],
            pod=record["pod"],
            version=record.get("version"),  # absent from older recorded runs
        )


@dataclass(frozen=True)
class EndpointStats:
    """Locust's statistics for one endpoint (or for all: name "Aggregated")."""

    method: str | None
    name: str
    requests: int
    failures: int
    avg_ms: float
    min_ms: float | None
    max_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float

    @property
    def error_rate(self) -> float:
        """Failures / requests (0 when nothing was sent)."""
        return self.failures / self.requests if self.requests else 0.0

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> EndpointStats:
        return cls(**{k: record[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class CpuSample:
    """Locust's event loop over the second ending at `t`, in % of that second.

    `percent` is time on a CPU; `waiting` is time it was ready to run but waited for a CPU
    (other processes had them). Either way it could not keep up, so both count as busy.
    """

    t: float
    percent: float
    waiting: float = 0.0
    seconds: float = 1.0  # the time the sample covers

    @property
    def busy(self) -> float:
        return self.percent + self.waiting


@dataclass(frozen=True)
class WorkerLoad:
    """What one Locust process sent and how busy it was."""

    name: str
    requests: int
    cpu: tuple[CpuSample, ...]
    lost_at: float | None = None
    lagging_at: float | None = None

    @property
    def peak_busy(self) -> float | None:
        return max((s.busy for s in self.cpu), default=None)

    @property
    def mean_busy(self) -> float | None:
        return sum(s.busy for s in self.cpu) / len(self.cpu) if self.cpu else None

    @property
    def cpu_seconds(self) -> float:
        """Time its event loop spent on a CPU over the samples (start-up excluded)."""
        return sum(s.percent / 100 * s.seconds for s in self.cpu)


@dataclass(frozen=True)
class Generator:
    """Where a run's load came from: `host` or `cluster`, and each Locust process sending it."""

    placement: str
    workers: tuple[WorkerLoad, ...]

    def describe(self) -> str:
        """One line: placement, worker count and each worker's CPU."""
        each = ", ".join(
            f"{w.name}: {w.requests} requests, CPU mean {_percent(w.mean_busy)} "
            f"peak {_percent(w.peak_busy)}"
            + (" (LOST)" if w.lost_at else " (LAGGING)" if w.lagging_at else "")
            for w in self.workers
        )
        count = len(self.workers)
        return (
            f"load from the {self.placement}, {count} Locust process{'es' * (count != 1)}: {each}"
        )


@dataclass(frozen=True)
class LoadResult:
    """Everything one load run measured, plus whether the generator itself can be trusted.

    Attributes:
        generator: where the load came from and each Locust process's requests and CPU.
        reliable: False when a Locust process saturated its CPU, was lost or fell behind;
            then latency and throughput describe the generator, and SLO verdicts say so.
        report_dir: where Locust's CSV and HTML, its log and the event record are.
    """

    base_url: str
    started: float
    ended: float
    total: EndpointStats
    endpoints: list[EndpointStats]
    series: list[SeriesPoint]
    failures: list[FailedRequest]
    pods: dict[str, int]
    versions: dict[str, int]
    generator: Generator
    unreliable_reason: str | None
    report_dir: Path

    @property
    def reliable(self) -> bool:
        return self.unreliable_reason is None

    @property
    def requests(self) -> int:
        return self.total.requests

    @property
    def error_rate(self) -> float:
        return self.total.error_rate

    @property
    def rps(self) -> float:
        """Average requests per second over the run (Locust's total)."""
        return self.total.rps

    def endpoint(self, name: str, method: str = "GET") -> EndpointStats:
        """The statistics of one endpoint by its Locust name (e.g. "/work")."""
        for stats in self.endpoints:
            if stats.name == name and stats.method == method:
                return stats
        known = ", ".join(f"{e.method} {e.name}" for e in self.endpoints) or "none"
        raise KeyError(f"no requests named {method} {name} in this run (seen: {known})")

    def failures_between(self, start: float, end: float) -> list[FailedRequest]:
        """Failed requests that were in flight at any moment of [start, end] (time.time())."""
        return [f for f in self.failures if f.t <= end and f.end >= start]

    def series_between(self, start: float, end: float) -> list[SeriesPoint]:
        """Seconds of the series that overlap [start, end]."""
        return [p for p in self.series if p.t + 1 > start and p.t <= end]

    def error_rate_between(self, start: float, end: float) -> float:
        """Failed / completed requests over the seconds that overlap [start, end] (0 if none)."""
        seconds = self.series_between(start, end)
        requests = sum(p.requests for p in seconds)
        return sum(p.failures for p in seconds) / requests if requests else 0.0

    def summary(self) -> str:
        """A few lines for a terminal or an assertion message."""
        t = self.total
        lines = [
            f"load against {self.base_url}: {t.requests} requests, {t.failures} failed "
            f"({t.error_rate:.2%}), {t.rps:.1f} req/s, p50/p95/p99 "
            f"{_ms(t.p50_ms)}/{_ms(t.p95_ms)}/{_ms(t.p99_ms)}",
        ]
        lines += [
            f"  {e.method} {e.name}: {e.requests} requests, {e.failures} failed, "
            f"p95 {_ms(e.p95_ms)}"
            for e in self.endpoints
        ]
        if self.pods:
            lines.append(
                "  served by: " + ", ".join(f"{k}={v}" for k, v in sorted(self.pods.items()))
            )
        if self.versions:
            lines.append(
                "  versions: " + ", ".join(f"{k}={v}" for k, v in sorted(self.versions.items()))
            )
        lines.append(f"  {self.generator.describe()}")
        if self.unreliable_reason:
            lines.append(f"  UNRELIABLE: {self.unreliable_reason}")
        lines.append(f"  report: {self.report_dir}")
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def read_records(path: Path, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete JSON lines of `path` from byte `offset`, and the offset after them.

    A line the Locust process is still writing (no newline yet) is left for the next read.
    """
    if not path.exists():
        return [], offset
    with path.open("rb") as stream:
        stream.seek(offset)
        data = stream.read()
    complete = data[: data.rfind(b"\n") + 1]
    records = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return records, offset + len(complete)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"
