"""Locust-side recorder: timestamped facts from inside the Locust processes, as JSON lines.

Imported only by `_locust_entry` inside a Locust process (importing Locust monkey-patches
with gevent, which must never happen in the pytest process). The records are described in
`harness.load.merge`, which turns them into one run's view. Per role:

- a single process records its own requests and CPU into the event file;
- a worker records the same, and sends them to the master each second (Locust's own message
  channel), its last ones when it stops;
- the master relays every worker's records into the event file, notes workers joining,
  finishing, lost or lagging, and writes the summary from Locust's merged statistics.

Times are `time.time()` seconds, the clock the cluster timeline uses. The harness reads the
event file while the run goes on (on the host directly; in the cluster from the master pod).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, Runner, WorkerRunner
from locust.stats import StatsEntry

from harness.load._locust_entry import RECORD_MARKER, STDOUT_EVENTS, STOP_SIGNAL
from harness.load.merge import PERCENTILES, SINGLE, latency_bucket, version_reader

RECORDS_MESSAGE = "harness_records"
# Seconds without records from a worker that still beats before it counts as lagging.
LAG_LIMIT_S = 5.0

Emit = Callable[[list[dict[str, Any]]], None]


class EventFile:
    """The run's event file: one JSON record per line, flushed per line for live readers.

    In a pod (path "-") the records go to standard output, each line marked, where the
    harness follows the pod's log.
    """

    def __init__(self, path: str) -> None:
        if path == STDOUT_EVENTS:
            self._out, self._marker = sys.stdout, RECORD_MARKER
        else:
            self._out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the process
            self._marker = ""

    def write(self, records: list[dict[str, Any]]) -> None:
        self._out.write(
            "".join(self._marker + json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        )
        self._out.flush()

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()


class CpuMeter:
    """How busy this process's event loop (its main thread) was since the last reading.

    /proc/self/schedstat has time on a CPU and time waiting for one; without it (kernels
    built without schedstats) getrusage gives the time on a CPU only.
    """

    def __init__(self) -> None:
        self._schedstat = Path("/proc/self/schedstat")
        self._last = (time.monotonic(), *self._read())

    def _read(self) -> tuple[float, float]:
        try:
            on_cpu, waiting, _ = self._schedstat.read_text().split()
            return float(on_cpu), float(waiting)
        except (OSError, ValueError):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return (usage.ru_utime + usage.ru_stime) * 1e9, 0.0

    def sample(self) -> tuple[float, float, float]:
        """(% of the elapsed time on a CPU, % waiting for one, the elapsed seconds) since the
        previous sample."""
        wall, on_cpu, waiting = time.monotonic(), *self._read()
        last_wall, last_on_cpu, last_waiting = self._last
        self._last = (wall, on_cpu, waiting)
        elapsed_ns = max((wall - last_wall) * 1e9, 1.0)
        busy, queued = on_cpu - last_on_cpu, waiting - last_waiting
        return 100 * busy / elapsed_ns, 100 * queued / elapsed_ns, elapsed_ns / 1e9


class Recorder:
    """Buckets this process's requests by the second they completed in; emits closed seconds."""

    def __init__(self, emit: Emit, *, name: str, pod_header: str, version_from: str) -> None:
        self.emit = emit
        self.name = name
        self.pod_header = pod_header
        self.version_of = version_reader(version_from)
        self._latency: defaultdict[int, Counter[int]] = defaultdict(Counter)
        self._failures: Counter[int] = Counter()
        self._pods_per_second: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._versions_per_second: defaultdict[int, Counter[str]] = defaultdict(Counter)
        self._pending: list[dict[str, Any]] = []
        self.pods: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._flusher: gevent.Greenlet | None = None
        self._cpu = CpuMeter()
        self._next_second = int(time.time())

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
        self._latency[second][latency_bucket(response_time)] += 1
        headers = getattr(response, "headers", None)
        pod = headers.get(self.pod_header) if headers else None
        if pod:
            self.pods[pod] += 1
            self._pods_per_second[second][pod] += 1
        version = self.version_of(response)
        if version:
            self.versions[version] += 1
            self._versions_per_second[second][version] += 1
        if exception is not None:
            self._failures[second] += 1
            self._pending.append(
                {
                    "kind": "failure",
                    "worker": self.name,
                    "t": start_time if start_time is not None else now - response_time / 1000,
                    "end": now,
                    "method": request_type,
                    "name": name,
                    "error": f"{type(exception).__name__}: {exception}",
                    "pod": pod,
                    "version": version,
                }
            )

    def flush(self, environment: Environment, before: int) -> None:
        """Emit every second from the last one emitted up to `before`, the failures so far and
        a CPU sample.

        Quiet seconds are emitted too: no requests while users run is a fact (hanging target).
        """
        users = environment.runner.user_count if environment.runner else 0
        records = self._pending
        self._pending = []
        for second in range(self._next_second, before):
            latency = self._latency.pop(second, Counter())
            records.append(
                {
                    "kind": "second",
                    "worker": self.name,
                    "t": second,
                    "requests": sum(latency.values()),
                    "failures": self._failures.pop(second, 0),
                    "users": users,
                    "latency": dict(latency),
                    "pods": dict(self._pods_per_second.pop(second, {})),
                    "versions": dict(self._versions_per_second.pop(second, {})),
                }
            )
        self._next_second = max(self._next_second, before)
        percent, waiting, seconds = self._cpu.sample()
        records.append(
            {
                "kind": "cpu",
                "worker": self.name,
                "t": time.time(),
                "percent": percent,
                "waiting": waiting,
                "seconds": seconds,
            }
        )
        self.emit(records)

    def start(self, environment: Environment) -> None:
        self._next_second = int(time.time())
        self._cpu.sample()
        self._flusher = gevent.spawn(self._flush_every_second, environment)

    def stop(self, environment: Environment) -> None:
        """Emit everything still held (idempotent: a worker stops once per test)."""
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
            self.flush(environment, before=int(time.time()) + 1)

    def _flush_every_second(self, environment: Environment) -> None:
        while True:  # killed by stop(); the harness's time limit bounds the process
            gevent.sleep(math.ceil(time.time()) - time.time() + 0.001)
            self.flush(environment, before=int(time.time()))


class Relay:
    """The master's part: workers' records into the event file, and what happens to workers."""

    def __init__(self, out: EventFile, runner: MasterRunner) -> None:
        self.out = out
        self.runner = runner
        self.pods: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self._joined: set[str] = set()
        self._done: set[str] = set()
        self._lost: set[str] = set()
        self._lagging: set[str] = set()
        self._heard: dict[str, float] = {}
        self._watcher: gevent.Greenlet | None = None

    def on_connect(self, client_id: str, **_: Any) -> None:
        self._joined.add(client_id)
        self._heard[client_id] = time.time()
        self.out.write([{"kind": "worker_joined", "worker": client_id, "t": time.time()}])

    def on_records(self, environment: Environment, msg: Any, **_: Any) -> None:
        worker = msg.node_id
        self._heard[worker] = time.time()
        self.out.write(msg.data["records"])
        if msg.data.get("last"):
            self.pods.update(msg.data["pods"])
            self.versions.update(msg.data["versions"])
            self._done.add(worker)
            self.out.write([{"kind": "worker_done", "worker": worker, "t": time.time()}])

    def start(self) -> None:
        if self._watcher is None:
            self._watcher = gevent.spawn(self._watch)

    def _watch(self) -> None:
        while True:  # killed at quitting; the harness's time limit bounds the process
            gevent.sleep(1)
            self.check_workers()

    def check_workers(self) -> None:
        """Note each worker that went missing (no heartbeat) or whose records stopped."""
        now = time.time()
        for worker in sorted(self._joined - self._done - self._lost):
            client = self.runner.clients.get(worker)
            if client is None or client.state == STATE_MISSING:
                self._lost.add(worker)
                self.out.write([{"kind": "worker_lost", "worker": worker, "t": now}])
            elif now - self._heard[worker] > LAG_LIMIT_S and worker not in self._lagging:
                self._lagging.add(worker)
                self.out.write([{"kind": "worker_lagging", "worker": worker, "t": now}])

    def stop(self) -> None:
        """At the end every worker has sent its last records: one that did not is lost."""
        if self._watcher is not None:
            self._watcher.kill(block=False)
        self.check_workers()
        now = time.time()
        for worker in sorted(self._joined - self._done - self._lost):
            self._lost.add(worker)
            self.out.write([{"kind": "worker_lost", "worker": worker, "t": now}])


def summary(environment: Environment, pods: Counter[str], versions: Counter[str]) -> dict[str, Any]:
    """Locust's totals and per-endpoint statistics (merged over workers on a master)."""
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
        "pods": dict(pods),
        "versions": dict(versions),
        "cpu_warning": bool(environment.runner and environment.runner.cpu_warning_emitted),
    }


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


def stop_gracefully(runner: Runner) -> None:
    """End the run as a finished shape does; a master first waits for its workers' last records.

    Locust's MasterRunner.quit() tells workers to quit and gives their last reports 0.5 s
    (locustio/locust#1426); stop() waits until every worker has stopped its users and said so,
    and a worker's last records travel before that word.
    """
    if isinstance(runner, MasterRunner):
        runner.stop()
    runner.quit()


def install(events_path: str | None, *, pod_header: str, version_from: str) -> None:
    """Register the listeners for this process's role (known once Locust made its runner)."""

    @events.init.add_listener
    def _on_init(environment: Environment, runner: Runner, **_: Any) -> None:
        gevent.signal_handler(STOP_SIGNAL, stop_gracefully, runner)
        if isinstance(runner, WorkerRunner):
            _install_worker(environment, runner, pod_header, version_from)
            return
        assert events_path is not None, "the harness names the event file of a master or single"
        out = EventFile(events_path)
        out.write([{"kind": "init", "t": time.time(), "pid": os.getpid()}])
        if isinstance(runner, MasterRunner):
            _install_master(environment, runner, out)
        else:
            _install_single(environment, out, pod_header, version_from)


def _install_single(
    environment: Environment, out: EventFile, pod_header: str, version_from: str
) -> None:
    recorder = Recorder(out.write, name=SINGLE, pod_header=pod_header, version_from=version_from)
    environment.events.request.add_listener(recorder.on_request)

    @environment.events.test_start.add_listener
    def _on_test_start(environment: Environment, **_: Any) -> None:
        out.write([{"kind": "start", "t": time.time()}])
        recorder.start(environment)

    @environment.events.cpu_warning.add_listener
    def _on_cpu_warning(environment: Environment, cpu_usage: float, **_: Any) -> None:
        out.write([{"kind": "cpu_warning", "t": time.time(), "cpu": cpu_usage}])

    @environment.events.quitting.add_listener
    def _on_quitting(environment: Environment, **_: Any) -> None:
        recorder.stop(environment)
        out.write([summary(environment, recorder.pods, recorder.versions)])
        out.close()


def _install_worker(
    environment: Environment, runner: WorkerRunner, pod_header: str, version_from: str
) -> None:
    def send(records: list[dict[str, Any]]) -> None:
        runner.send_message(RECORDS_MESSAGE, {"records": records})

    recorder = Recorder(
        send, name=runner.client_id, pod_header=pod_header, version_from=version_from
    )
    environment.events.request.add_listener(recorder.on_request)
    environment.events.test_start.add_listener(lambda environment, **_: recorder.start(environment))

    @environment.events.test_stop.add_listener
    def _on_test_stop(environment: Environment, **_: Any) -> None:
        # Before Locust's "client_stopped", which ends the master's wait for this worker:
        # the last seconds, Locust's statistics since its last 3-second report, and the word
        # that this worker is done.
        recorder.stop(environment)
        stats: dict[str, Any] = {}
        environment.events.report_to_master.fire(client_id=runner.client_id, data=stats)
        runner.send_message("stats", stats)
        runner.send_message(
            RECORDS_MESSAGE,
            {
                "records": [],
                "last": True,
                "pods": dict(recorder.pods),
                "versions": dict(recorder.versions),
            },
        )


def _install_master(environment: Environment, runner: MasterRunner, out: EventFile) -> None:
    relay = Relay(out, runner)
    runner.register_message(RECORDS_MESSAGE, relay.on_records)
    environment.events.worker_connect.add_listener(relay.on_connect)

    @environment.events.test_start.add_listener
    def _on_test_start(environment: Environment, **_: Any) -> None:
        out.write([{"kind": "start", "t": time.time()}])
        relay.start()

    @environment.events.quitting.add_listener
    def _on_quitting(environment: Environment, **_: Any) -> None:
        relay.stop()
        out.write([summary(environment, relay.pods, relay.versions)])
        out.close()
