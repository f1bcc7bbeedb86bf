"""One run's view from what several Locust processes recorded (pure logic, no Locust).

A load run is one Locust process, or a master and N workers (Locust's distributed mode). Each
process that sends requests records the same facts, tagged with its name (`worker`):

- `second`: requests completed in one wall-clock second, failures, users at its end, which pod
  and which version served how many, and the response times as a histogram (`latency`:
  {bucket ms: count}), so that seconds of several workers merge into exact counts and
  percentiles;
- `cpu`: how busy the process's event loop was over one second;
- `failure`: one failed request.

The master relays its workers' records into its event file and adds what only it sees:
`worker_joined`, `worker_done` (the worker's last records arrived), `worker_lost` (no
heartbeat, or its last records never came: the worker died or hung) and `worker_lagging` (its
records stopped coming while it still beat). Here those records become one series, and the
verdict on the generator.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.load.result import CpuSample, Generator, SeriesPoint, WorkerLoad

# The name a process that is not part of a distributed run records under.
SINGLE = "local"
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
# Locust warns at this CPU share; above it, its timings measure itself, not the target.
CPU_SATURATION_PERCENT = 90.0
# Consecutive one-second samples above the limit that make a run unreliable.
CPU_SATURATION_SECONDS = 3


def latency_bucket(response_time_ms: float) -> int:
    """Round a response time the way Locust's own statistics do (its percentiles agree)."""
    if response_time_ms < 100:
        return round(response_time_ms)
    if response_time_ms < 1000:
        return int(round(response_time_ms, -1))
    if response_time_ms < 10000:
        return int(round(response_time_ms, -2))
    return int(round(response_time_ms, -3))


def version_reader(source: str) -> Callable[[Any], str | None]:
    """How to read the version that answered from a response, for `source` `header:NAME` or
    `json:FIELD` (`json:build.version` goes into nested objects).

    A response that does not carry it (a refused connection, a body without the field) has
    no version: a request nobody answered is attributed to no one.
    """
    kind, _, name = source.partition(":")
    if kind == "header":

        def from_header(response: Any) -> str | None:
            headers = getattr(response, "headers", None)
            return (headers.get(name) or None) if headers else None

        return from_header
    if kind == "json":
        path = name.split(".")

        def from_json(response: Any) -> str | None:
            try:
                value = response.json()
                for key in path:
                    value = value[key]
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):  # no field
                return None
            return None if value is None or isinstance(value, dict | list) else str(value)

        return from_json
    raise ValueError(f"version source {source!r} is neither header:NAME nor json:FIELD")


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """Nearest-rank percentile of a {bucket: count} histogram (None when it is empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return float(bucket)
    raise AssertionError("unreachable: the ranks add up to the total")


def merge_seconds(records: Iterable[dict[str, Any]]) -> list[SeriesPoint]:
    """The run's per-second series: every worker's `second` records of a second, summed."""
    requests: Counter[int] = Counter()
    failures: Counter[int] = Counter()
    users: Counter[int] = Counter()
    latency: defaultdict[int, Counter[int]] = defaultdict(Counter)
    pods: defaultdict[int, Counter[str]] = defaultdict(Counter)
    versions: defaultdict[int, Counter[str]] = defaultdict(Counter)
    seconds: set[int] = set()
    for record in records:
        if record["kind"] != "second":
            continue
        t = record["t"]
        seconds.add(t)
        requests[t] += record["requests"]
        failures[t] += record["failures"]
        users[t] += record["users"]
        latency[t].update({int(k): v for k, v in record["latency"].items()})
        pods[t].update(record["pods"])
        versions[t].update(record.get("versions", {}))  # absent from older recorded runs
    return [
        SeriesPoint(
            t=t,
            requests=requests[t],
            failures=failures[t],
            users=users[t],
            p50_ms=percentile(latency[t], PERCENTILES["p50"]),
            p95_ms=percentile(latency[t], PERCENTILES["p95"]),
            p99_ms=percentile(latency[t], PERCENTILES["p99"]),
            pods=dict(pods[t]),
            versions=dict(versions[t]),
        )
        for t in sorted(seconds)
    ]


def complete_seconds(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the seconds every still-reporting worker has closed (for live reads).

    A second is complete once each worker that joined, and is neither done nor lost, has
    written it: a newer second of one worker must not show as a drop in the total.
    """
    latest: dict[str, int] = {}
    finished: set[str] = set()
    for record in records:
        kind, worker = record["kind"], record.get("worker", SINGLE)
        if kind == "worker_joined":
            latest.setdefault(worker, -1)
        elif kind == "second":
            latest[worker] = max(latest.get(worker, -1), record["t"])
        elif kind in ("worker_done", "worker_lost"):
            finished.add(worker)
    reporting = [t for worker, t in latest.items() if worker not in finished]
    if not reporting:
        return records
    watermark = min(reporting)
    return [r for r in records if r["kind"] != "second" or r["t"] <= watermark]


def generator(records: list[dict[str, Any]], placement: str) -> Generator:
    """Each process that sent requests (in the order they joined), from the run's records."""
    names: list[str] = []
    requests: Counter[str] = Counter()
    cpu: defaultdict[str, list[CpuSample]] = defaultdict(list)
    lost: dict[str, float] = {}
    lagging: dict[str, float] = {}
    for record in records:
        kind, worker = record["kind"], record.get("worker", SINGLE)
        if kind in ("worker_joined", "second", "cpu") and worker not in names:
            names.append(worker)
        if kind == "second":
            requests[worker] += record["requests"]
        elif kind == "cpu":
            cpu[worker].append(
                CpuSample(record["t"], record["percent"], record["waiting"], record["seconds"])
            )
        elif kind == "worker_lost":
            lost.setdefault(worker, record["t"])
        elif kind == "worker_lagging":
            lagging.setdefault(worker, record["t"])
    return Generator(
        placement,
        tuple(
            WorkerLoad(n, requests[n], tuple(cpu[n]), lost.get(n), lagging.get(n)) for n in names
        ),
    )


def saturation(cpu: Iterable[CpuSample], *, since: float) -> str | None:
    """How one process's CPU samples show it could not keep up, or None when they do not."""
    streak = longest = 0
    peak: CpuSample | None = None
    for sample in cpu:
        if sample.t < since:
            continue
        if peak is None or sample.busy > peak.busy:
            peak = sample
        streak = streak + 1 if sample.busy >= CPU_SATURATION_PERCENT else 0
        longest = max(longest, streak)
    if longest < CPU_SATURATION_SECONDS or peak is None:
        return None
    return (
        f"busy >= {CPU_SATURATION_PERCENT:g}% of the time for {longest}s in a row (worst "
        f"second: {peak.percent:.0f}% on a CPU + {peak.waiting:.0f}% waiting for one)"
    )


def generator_verdict(gen: Generator, *, since: float, locust_warned: bool) -> str | None:
    """Why the run's numbers describe the generator rather than the service, or None.

    A saturated, lost or lagging Locust process lowered the offered load without saying so:
    each one is named.
    """
    problems = []
    for worker in gen.workers:
        if worker.lost_at is not None:
            problems.append(
                f"{worker.name} was lost {worker.lost_at - since:.0f}s into the run (no "
                "heartbeat, or its last records never came): its users stopped"
            )
        elif worker.lagging_at is not None:
            problems.append(
                f"{worker.name} fell behind: its records stopped arriving "
                f"{worker.lagging_at - since:.0f}s into the run"
            )
        if (busy := saturation(worker.cpu, since=since)) is not None:
            problems.append(f"{worker.name} was {busy}")
    if locust_warned:
        problems.append("Locust warned that its CPU was above 90%")
    if not problems:
        return None
    return (
        "load generator saturated: "
        + "; ".join(problems)
        + ". Latency and throughput describe the generator, not the service. Use more "
        "workers, fewer users or a slower pace per user, or a less busy machine"
    )
