"""Locust-side recorder: timestamped facts from inside the Locust process, as JSON lines.

Imported only by `_locust_entry` inside the Locust process (importing Locust monkey-patches
with gevent, which must never happen in the pytest process). It records, and nothing else:

- `second`: per wall-clock second, requests completed, failures, p50/p95/p99 (ms), the user
  count at the end of the second and which pod served how many;
- `failure`: every failed request (start and end time, endpoint, error, serving pod);
- `cpu_warning`: Locust's own "CPU above 90%" warning;
- `summary`: at the end, Locust's totals and per-endpoint statistics plus per-pod and
  per-version counts.

Times are `time.time()` seconds, the clock the cluster timeline uses. The parent process
(`harness.load.runner`) reads the file while the run goes on.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter, defaultdict
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import Runner
from locust.stats import StatsEntry

from harness.load._locust_entry import STOP_SIGNAL

PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


class Recorder:
    """Buckets requests by the second they completed in and writes each closed second."""

    def __init__(self, path: str, *, pod_header: str, version_header: str) -> None:
        self.pod_header = pod_header
        self.version_header = version_header
        self._out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process
        self._times: defaultdict[int, list[float]] = defaultdict(list)
        self._failures: Counter[int] = Counter()
        self._pods_per_second: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._pending_failures: list[dict[str, Any]] = []
        self.pods: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._flusher: gevent.Greenlet | None = None
        self._next_second = int(time.time())

    def write(self, record: dict[str, Any]) -> None:
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        response: Any = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        now = time.time()
        second = int(now)
        self._times[second].append(response_time)
        headers = getattr(response, "headers", None)
        pod = headers.get(self.pod_header) if headers else None
        if pod:
            self.pods[pod] += 1
            self._pods_per_second[second][pod] += 1
            version = headers.get(self.version_header)
            if version:
                self.versions[version] += 1
        if exception is not None:
            self._failures[second] += 1
            self._pending_failures.append(
                {
                    "kind": "failure",
                    "t": start_time if start_time is not None else now - response_time / 1000,
                    "end": now,
                    "method": request_type,
                    "name": name,
                    "error": f"{type(exception).__name__}: {exception}",
                    "pod": pod,
                }
            )

    def flush(self, environment: Environment, before: int) -> None:
        """Write every second from the last one written up to `before`, and the failures so far.

        Quiet seconds are written too: no requests while users run is a fact (hanging target).
        """
        users = environment.runner.user_count if environment.runner else 0
        for second in range(self._next_second, before):
            times = sorted(self._times.pop(second, []))
            self.write(
                {
                    "kind": "second",
                    "t": second,
                    "requests": len(times),
                    "failures": self._failures.pop(second, 0),
                    "users": users,
                    **{key: _percentile(times, q) for key, q in PERCENTILES.items()},
                    "pods": dict(self._pods_per_second.pop(second, {})),
                }
            )
        self._next_second = max(self._next_second, before)
        for failure in self._pending_failures:
            self.write(failure)
        self._pending_failures.clear()

    def start(self, environment: Environment) -> None:
        now = time.time()
        self._next_second = int(now)
        self.write({"kind": "start", "t": now})
        self._flusher = gevent.spawn(self._flush_every_second, environment)

    def finish(self, environment: Environment) -> None:
        if self._flusher is not None:
            self._flusher.kill(block=False)
        self.flush(environment, before=int(time.time()) + 1)
        self.write(self.summary(environment))
        self._out.close()

    def _flush_every_second(self, environment: Environment) -> None:
        while True:  # killed by finish(); the harness's time limit bounds the process
            gevent.sleep(math.ceil(time.time()) - time.time() + 0.001)
            self.flush(environment, before=int(time.time()))

    def summary(self, environment: Environment) -> dict[str, Any]:
        stats = environment.stats
        return {
            "kind": "summary",
            "t": time.time(),
            "total": _entry(stats.total),
            "endpoints": [_entry(e) for e in stats.entries.values()],
            "errors": [
                {
                    "method": e.method,
                    "name": e.name,
                    "error": str(e.error),
                    "occurrences": e.occurrences,
                }
                for e in stats.errors.values()
            ],
            "pods": dict(self.pods),
            "versions": dict(self.versions),
            "cpu_warning": bool(environment.runner and environment.runner.cpu_warning_emitted),
        }


def _percentile(sorted_times: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_times:
        return None
    return sorted_times[max(0, math.ceil(q * len(sorted_times)) - 1)]


def _entry(entry: StatsEntry) -> dict[str, Any]:
    return {
        "method": entry.method,
        "name": entry.name,
        "requests": entry.num_requests,
        "failures": entry.num_failures,
        "avg_ms": entry.avg_response_time,
        "min_ms": entry.min_response_time,
        "max_ms": entry.max_response_time,
        **{
            f"{key}_ms": entry.get_response_time_percentile(q) if entry.num_requests else None
            for key, q in PERCENTILES.items()
        },
        "rps": entry.total_rps,
        "first_t": entry.start_time,
        "last_t": entry.last_request_timestamp,
    }


def install(path: str, *, pod_header: str, version_header: str) -> Recorder:
    """Register the recorder's listeners on Locust's global events."""
    recorder = Recorder(path, pod_header=pod_header, version_header=version_header)
    events.request.add_listener(recorder.on_request)

    @events.init.add_listener
    def _on_init(environment: Environment, runner: Runner, **_: Any) -> None:
        gevent.signal_handler(STOP_SIGNAL, runner.quit)  # before "init": the harness waits for it
        recorder.write({"kind": "init", "t": time.time(), "pid": os.getpid()})

    @events.test_start.add_listener
    def _on_test_start(environment: Environment, **_: Any) -> None:
        recorder.start(environment)

    @events.cpu_warning.add_listener
    def _on_cpu_warning(environment: Environment, cpu_usage: float, **_: Any) -> None:
        recorder.write({"kind": "cpu_warning", "t": time.time(), "cpu": cpu_usage})

    @events.quitting.add_listener
    def _on_quitting(environment: Environment, **_: Any) -> None:
        recorder.finish(environment)

    return recorder
