"""Run Locust headless in its own process groups, bounded in time, and read what it records.

The pytest process never imports Locust (Locust monkey-patches with gevent on import); it
starts `_locust_entry.py` in a new session (one process, or with `workers=N` a Locust master
and N worker processes on 127.0.0.1), follows the JSON lines the Locust-side recorder writes
(`harness.load.merge` describes them), and kills every process group on any exit path:
end of the `with` block, exception, KeyboardInterrupt, interpreter exit (atexit) and, through
PR_SET_PDEATHSIG, even the death of this process. (The kernel ties PR_SET_PDEATHSIG to the
thread that started Locust: start runs from a thread that outlives them, as pytest's does.)
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from harness.commands import run as run_command
from harness.errors import CommandFailed, HarnessError, InvalidConfiguration
from harness.load import _locust_entry
from harness.load.merge import complete_seconds, generator, generator_verdict, merge_seconds
from harness.load.result import (
    EndpointStats,
    FailedRequest,
    LoadResult,
    SeriesPoint,
    read_records,
)
from harness.load.shapes import Shape
from harness.progress import say
from harness.suite import DEMO_LOCUSTFILE
from harness.wait import Pending, wait_for

if TYPE_CHECKING:  # the Locust processes import this module: no Kubernetes client there
    from harness.load.cluster import ClusterSite

PROBE_TIMEOUT = 3.0
STARTUP_TIMEOUT = 30.0
STOP_GRACE = 10.0
EVENTS_FILE = "load-events.jsonl"
LOG_FILE = "locust.log"
# Where a run's Locust processes run: processes on this machine, or pods in the cluster.
HOST = "host"
CLUSTER = "cluster"
PLACEMENTS = (HOST, CLUSTER)
# Pods may wait for a node and start a container before Locust has loaded.
CLUSTER_STARTUP_TIMEOUT = 120.0


class TargetUnreachable(HarnessError):
    """The load target did not accept a TCP connection."""


class LoadRunFailed(HarnessError):
    """The Locust process failed at run time (its log tail is in the message)."""


class LoadRunner:
    """One load run's configuration, validated before anything starts; `start()` runs it.

    Args:
        base_url: the target, e.g. "http://127.0.0.1:8080" (only this machine's addresses).
        shape: users over time (`Constant`, `Ramp`, `Step`, `Spike`); None uses the
            locustfile's own `LoadTestShape`, and then `time_limit` is required.
        locustfile: the Locust file (default: the demo service's, loadtests/demo.py).
        report_dir: folder for Locust's CSV/HTML, its log and the event record.
        time_limit: hard bound in seconds (default: the shape's duration + 30 s); the run is
            stopped at this point, then killed.
        stop_timeout: seconds users get to finish their current request at the end, so that
            what the target answered and what Locust counted agree.
        env: extra environment for the locustfile (e.g. {"DEMO_USER_RPS": "5"}).
        pod_header: the response header naming the serving pod (default X-Pod-Name).
        version_from: where a response says which version answered, `header:NAME` or
            `json:FIELD` (default header:X-App-Version); counted per version and second.
        local_networks: CIDRs that stay on this machine although routing says otherwise
            (a cluster's service range, which kube-proxy translates locally).
        workers: 0 runs one Locust process; N runs Locust's distributed mode, a master and
            N workers, whose records come back merged.
        placement: "host" runs Locust here (a target on this machine); "cluster" runs it as
            pods in `site`'s namespace (a target inside the cluster: a Service's name).
        site: the cluster, namespace and load image for placement "cluster".

    Raises:
        InvalidConfiguration: bad URL, off-machine target, missing locustfile, bad bounds,
            a worker count that is not a whole number >= 0.

    Example:
        >>> with LoadRunner(base_url=url, shape=Constant(users=5, seconds=10),
        ...                 report_dir=tmp).start() as run:
        ...     inject_fault()
        ...     result = run.result()
    """

    def __init__(
        self,
        *,
        base_url: str,
        shape: Shape | None,
        report_dir: Path,
        locustfile: Path = DEMO_LOCUSTFILE,
        time_limit: float | None = None,
        stop_timeout: float = 5.0,
        env: Mapping[str, str] | None = None,
        pod_header: str = _locust_entry.POD_HEADER,
        version_from: str = _locust_entry.VERSION_FROM,
        local_networks: Iterable[str] = (),
        workers: int = 0,
        placement: str = HOST,
        site: ClusterSite | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.host, self.port = _parse_target(self.base_url)
        self.shape = shape
        self.report_dir = Path(report_dir)
        self.locustfile = Path(locustfile).resolve()
        self.stop_timeout = stop_timeout
        self.env = {
            **(env or {}),
            _locust_entry.POD_HEADER_ENV: pod_header,
            _locust_entry.VERSION_FROM_ENV: version_from,
        }
        if not self.locustfile.is_file():
            raise InvalidConfiguration(
                f"locustfile {locustfile} does not exist",
                fix="pass the path of a Locust file (e.g. loadtests/demo.py)",
            )
        if shape is None and time_limit is None:
            raise InvalidConfiguration(
                "a load run without a harness shape needs a time_limit",
                fix="pass shape=Constant(...)/Ramp(...)/... or time_limit=SECONDS",
            )
        self.time_limit = time_limit if time_limit is not None else shape.duration + 30.0
        if not (math.isfinite(self.time_limit) and self.time_limit > 0 and stop_timeout >= 0):
            raise InvalidConfiguration(
                f"load run bounds time_limit={time_limit!r}, stop_timeout={stop_timeout!r} "
                "are invalid",
                fix="give a time_limit > 0 and a stop_timeout >= 0 (seconds)",
            )
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise InvalidConfiguration(
                f"load workers {workers!r} is not a whole number >= 0",
                fix="give 0 for one Locust process, or N for a master and N workers "
                "(--load-workers, the spec's load.workers)",
            )
        self.workers = workers
        if placement not in PLACEMENTS:
            raise InvalidConfiguration(
                f"load placement {placement!r} is not one of {', '.join(PLACEMENTS)}",
                fix="use host (Locust on this machine) or cluster (Locust pods in the test's "
                "namespace)",
            )
        self.placement = placement
        self.site = site
        if placement == CLUSTER:
            from harness.load.cluster import service_named

            if site is None:
                raise InvalidConfiguration(
                    "load from the cluster needs the cluster, namespace and load image",
                    fix="pass site=ClusterSite(...) (the `load` fixture does so itself)",
                )
            service_named(self.host)
        else:
            _refuse_off_machine(self.host, _networks(local_networks))

    def start(self) -> LoadRun:
        """Probe the target (from the host), start Locust and return once it has loaded the
        locustfile.

        Raises:
            TargetUnreachable: no TCP connection within a few seconds.
            InvalidConfiguration: the locustfile (or Locust's options) failed at start.
        """
        if self.placement == HOST:
            _probe(self.base_url, self.host, self.port)
        run = LoadRun(self)
        try:
            run._launch()
        except BaseException:
            run.close()
            raise
        return run

    @property
    def startup_timeout(self) -> float:
        return CLUSTER_STARTUP_TIMEOUT if self.placement == CLUSTER else STARTUP_TIMEOUT

    def locustfiles(self) -> str:
        files = [str(self.locustfile)]
        if self.shape is not None:
            files.append(str(_locust_entry.SHAPE_LOCUSTFILE))
        return ",".join(files)

    def locust_argv(self) -> list[str]:
        """Locust's options for the single process or the master (besides -f and the role).

        No --run-time: with a shape Locust only arms it after the shape ends, so the
        harness's own timer is the one bound for every kind of run. A master gives up when
        its workers do not all connect in time. Locust's CSV and HTML go to the report folder
        (from a pod, through its log).
        """
        master = (
            ["--expect-workers", str(self.workers),
             "--expect-workers-max-wait", f"{self.startup_timeout:g}"]
            if self.workers
            else []
        )  # fmt: skip
        folder = str(self.report_dir) if self.placement == HOST else _locust_entry.POD_REPORTS
        reports = ["--csv", f"{folder}/locust", "--html", f"{folder}/locust.html"]
        return [
            *master,
            "--headless",
            "--host",
            self.base_url,
            "--stop-timeout",
            f"{self.stop_timeout:g}",
            *reports,
            "--exit-code-on-error",
            "0",
            "--only-summary",
        ]

    def locust_env(self) -> dict[str, str]:
        """The environment the locustfile and the recorder read (besides the event file)."""
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        if self.shape is not None:
            env[_locust_entry.SHAPE_ENV] = json.dumps(self.shape.to_spec())
        return env


_live_runs: weakref.WeakSet[LoadRun] = weakref.WeakSet()


@atexit.register
def _kill_live_runs() -> None:
    for run in list(_live_runs):
        run.close()


class LocustProcess:
    """One Locust process in its own session, its output in `log_path`; reaped here."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log_path: Path, cwd: Path) -> None:
        self.log_path = log_path
        self.exit_code: int | None = None
        self.cpu_seconds = 0.0  # user + system time, from the kernel at its exit
        self._lock = threading.Lock()
        with log_path.open("wb") as log:
            log.write(f"# {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self._proc.pid

    def reap(self, block: bool = False) -> bool:
        """True once the process has exited; what it started in its group goes with it."""
        with self._lock:
            if self.exit_code is not None:
                return True
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return False
            self.exit_code = self._proc.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.kill_group()
        return True

    def signal(self, signum: int) -> None:
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        if not self.reap():
            self.kill_group()
            self.reap(block=True)


class Generators(Protocol):
    """The Locust processes of one run, wherever they run (`HostProcesses`, `LocustPods`)."""

    exit_code: int | None

    def exited(self) -> bool:
        """True once the single process or the master has ended."""
        ...

    def request_stop(self, grace_s: float) -> None:
        """Ask the single process or the master to end the run as a finished shape does."""
        ...

    def kill(self) -> None:
        """End whatever is left of the run now (idempotent)."""
        ...

    def state(self) -> str:
        """What they are doing, for error messages ("" when their log says it all)."""
        ...


class HostProcesses:
    """Locust processes on this machine: one, or a master on 127.0.0.1 and its workers."""

    def __init__(self, config: LoadRunner, events_path: Path, log_path: Path) -> None:
        entry = [sys.executable, _locust_entry.__file__]
        env = {**os.environ, **config.locust_env(), _locust_entry.PARENT_PID_ENV: str(os.getpid())}
        files = ["-f", config.locustfiles()]
        port = _free_port()
        role = (
            ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port)]
            if config.workers
            else []
        )
        self.leader = LocustProcess(
            [*entry, *files, *role, *config.locust_argv()],
            {**env, _locust_entry.EVENTS_FILE_ENV: str(events_path)},
            log_path,
            config.report_dir,
        )
        worker = ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
        self.workers = [
            LocustProcess(
                [*entry, *files, *worker],
                env,
                config.report_dir / f"locust-worker-{index + 1}.log",
                config.report_dir,
            )
            for index in range(config.workers)
        ]

    @property
    def exit_code(self) -> int | None:
        return self.leader.exit_code

    @property
    def pids(self) -> list[int]:
        return [self.leader.pid, *(w.pid for w in self.workers)]

    def exited(self) -> bool:
        return self.leader.reap()

    def request_stop(self, grace_s: float) -> None:
        self.leader.signal(_locust_entry.STOP_SIGNAL)

    def kill(self) -> None:
        for process in [*self.workers, self.leader]:
            process.kill()

    def state(self) -> str:
        return ""


class LoadRun:
    """A running (or finished) load run: read its series while it goes, then its result.

    Use as a context manager: leaving the block stops the load (users finish their
    current request); an exception or KeyboardInterrupt kills it. `result()` waits for the
    natural end of the shape when called inside the block.
    """

    def __init__(self, config: LoadRunner) -> None:
        self.config = config
        self.events_path = config.report_dir / EVENTS_FILE
        self.log_path = config.report_dir / LOG_FILE
        self._generators: Generators | None = None
        self._records: list[dict[str, Any]] = []
        self._offset = 0
        self._read_lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._result: LoadResult | None = None
        self.started = time.time()
        self.deadline = self.started + config.startup_timeout + config.time_limit
        self.time_limit_hit = False

    # -- life cycle ------------------------------------------------------------------------

    def _launch(self) -> None:
        config = self.config
        config.report_dir.mkdir(parents=True, exist_ok=True)
        self.events_path.unlink(missing_ok=True)
        self.log_path.unlink(missing_ok=True)
        _live_runs.add(self)
        if config.placement == CLUSTER:
            from harness.load.cluster import LocustPods

            assert config.site is not None  # LoadRunner checked
            pods = LocustPods(
                config.site,
                target_host=config.host,
                target_port=config.port,
                locustfile=config.locustfile,
                with_shape=config.shape is not None,
                workers=config.workers,
                deadline_s=config.startup_timeout + config.time_limit,
                events_path=self.events_path,
                log_path=self.log_path,
            )
            self._generators = pods
            pods.launch(config.locust_argv(), config.locust_env())
            where = f"pods {pods.name}-* in {config.site.namespace}"
        else:
            processes = HostProcesses(config, self.events_path, self.log_path)
            self._generators = processes
            where = f"pid {processes.leader.pid}"
        self.started = time.time()
        workers = f" with {config.workers} workers" if config.workers else ""
        say(
            f"load: Locust ({where}){workers} against {config.base_url}, "
            f"bounded to {config.time_limit:g}s, report in {config.report_dir}"
        )
        wait_for(
            self._loaded,
            what=f"Locust to load {config.locustfile.name}",
            timeout=config.startup_timeout,
            interval=0.1,
        )
        # The hard bound; Locust's own --run-time only starts after a shape has ended.
        self.deadline = time.time() + config.time_limit
        self._timer = threading.Timer(config.time_limit, self._on_time_limit)
        self._timer.daemon = True
        self._timer.start()

    def _loaded(self) -> bool | Pending:
        if any(r["kind"] == "init" for r in self._read()):
            return True
        if self._reap():
            raise InvalidConfiguration(
                f"Locust exited ({self.exit_code}) before the load started, loading "
                f"{self.config.locustfile}:\n{self.log_tail()}{self._state()}",
                fix=f"fix the locustfile or options above; run `python {self.config.locustfile}` "
                "to see import errors; full log: " + str(self.log_path),
            )
        return Pending(f"Locust is starting{self._state()}")

    def _on_time_limit(self) -> None:
        if not self._reap():
            self.time_limit_hit = True
            say(f"load: time limit {self.config.time_limit:g}s reached, stopping Locust")
            self.stop()

    @property
    def pids(self) -> list[int]:
        """The ids of Locust processes on this machine: the single process or the master
        first, then the workers (none for load from the cluster)."""
        return self._generators.pids if isinstance(self._generators, HostProcesses) else []

    @property
    def exit_code(self) -> int | None:
        return self._generators.exit_code if self._generators else None

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the ended Locust processes on this machine, start-up included, from
        the kernel (0 for load from the cluster)."""
        if not isinstance(self._generators, HostProcesses):
            return 0.0
        return sum(p.cpu_seconds for p in [self._generators.leader, *self._generators.workers])

    @property
    def running(self) -> bool:
        return not self._reap()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the run to end on its own (its shape ends, or the time limit stops it)."""
        bound = timeout if timeout is not None else self._remaining() + STOP_GRACE
        wait_for(
            lambda: True if self._reap() else Pending("Locust running"),
            what="the load run to finish",
            timeout=max(bound, 0.1),
            interval=0.2,
        )

    def stop(self) -> None:
        """End the load now: users finish their current request, Locust writes its reports.

        Escalates to killing the process groups when Locust does not exit in time.
        """
        if self._generators is None or self._reap():
            self.close()
            return
        self._generators.request_stop(self.config.stop_timeout + STOP_GRACE)
        try:
            wait_for(
                lambda: True if self._reap() else Pending("Locust stopping"),
                what="Locust to stop",
                timeout=self.config.stop_timeout + STOP_GRACE,
                interval=0.1,
            )
        except HarnessError:
            say(
                f"load: Locust did not stop within {self.config.stop_timeout + STOP_GRACE:g}s, "
                "killing it"
            )
        self.close()

    def close(self) -> None:
        """Kill whatever is left of the run's processes or pods (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._generators is not None:
            self._generators.kill()
        _live_runs.discard(self)

    def __enter__(self) -> LoadRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.close()

    # -- reading ---------------------------------------------------------------------------

    def series(self) -> list[SeriesPoint]:
        """The per-second series so far: each point one wall-clock second that every worker
        still sending has closed, summed over the workers."""
        return merge_seconds(complete_seconds(self._read()))

    def failures(self) -> list[FailedRequest]:
        """Failed requests recorded so far."""
        return [FailedRequest.from_record(r) for r in self._read() if r["kind"] == "failure"]

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait for the end of the run and return everything it measured.

        Raises:
            LoadRunFailed: Locust ended without its summary (crash, kill); log tail included.
            WaitTimeout: the run did not end within `timeout`.
        """
        if self._result is not None:
            return self._result
        self.wait(timeout)
        self.close()
        records = self._read()
        summary = next((r for r in reversed(records) if r["kind"] == "summary"), None)
        if summary is None:
            raise LoadRunFailed(
                f"Locust against {self.config.base_url} ended (exit {self.exit_code}) without "
                f"its summary:\n{self.log_tail()}",
                fix=f"see the full log {self.log_path}",
            )
        start = next((r["t"] for r in records if r["kind"] == "start"), self.started)
        load_generator = generator(records, self.config.placement)
        self._result = LoadResult(
            base_url=self.config.base_url,
            started=start,
            ended=summary["t"],
            total=EndpointStats.from_record(summary["total"]),
            endpoints=[EndpointStats.from_record(e) for e in summary["endpoints"]],
            series=merge_seconds(records),
            failures=self.failures(),
            pods=summary["pods"],
            versions=summary["versions"],
            generator=load_generator,
            unreliable_reason=generator_verdict(
                load_generator, since=start + 1, locust_warned=summary["cpu_warning"]
            ),
            report_dir=self.config.report_dir,
        )
        return self._result

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of Locust's output (the master's, with workers), for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join(f"    {line}" for line in text.strip().splitlines()[-lines:])

    def _state(self) -> str:
        state = self._generators.state() if self._generators else ""
        return f"\n    ({state})" if state else ""

    def _read(self) -> list[dict[str, Any]]:
        with self._read_lock:
            new, self._offset = read_records(self.events_path, self._offset)
            self._records.extend(new)
            return list(self._records)

    # -- the processes -----------------------------------------------------------------------

    def _remaining(self) -> float:
        return self.deadline - time.time()

    def _reap(self) -> bool:
        """True once the single process or the master has exited."""
        return self._generators is None or self._generators.exited()


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a master: workers connect to it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Load:
    """Starts a test's load runs, each in its own report subfolder; `close()` ends them all.

    The `load` pytest fixture is one of these, rooted at the test's report folder.

    Example:
        >>> with Load(report_dir).run(url, Step(step_users=5, step_time=10, steps=3)) as run:
        ...     kill_a_pod()
        >>> SLO(max_error_rate=0.01).check(run.result())
    """

    def __init__(
        self,
        report_dir: Path,
        *,
        workers: int | None = None,
        placement: str | None = None,
        cluster_site: Callable[[], ClusterSite] | None = None,
    ) -> None:
        self.report_dir = Path(report_dir)
        self.workers = workers
        self.placement = placement
        self.cluster_site = cluster_site
        self._runs: list[LoadRun] = []

    def placement_for(self, asked: str) -> str:
        """Where a run that asks for `asked` runs: this `Load`'s placement wins when set."""
        return self.placement or asked

    def run(self, base_url: str, shape: Shape | None, **options: Any) -> LoadRun:
        """Start a run (arguments of `LoadRunner`, report_dir excepted): reports go to load-N/.

        A `Load` made with `workers` or `placement` (the --load-workers and --load-placement
        options) runs every run so, whatever the caller (or the spec) asked for; a run in the
        cluster gets its site from `cluster_site()` unless it names one, its pods kept off
        the nodes named in `avoid_nodes` (those the test stops; ignored on the host).
        """
        if self.workers is not None:
            options["workers"] = self.workers
        if self.placement is not None:
            options["placement"] = self.placement
        avoid_nodes = tuple(options.pop("avoid_nodes", ()))
        if options.get("placement") == CLUSTER and options.get("site") is None:
            if self.cluster_site is None:
                raise InvalidConfiguration(
                    "load from the cluster needs the cluster, namespace and load image",
                    fix="make the Load with cluster_site=..., or pass site=ClusterSite(...)",
                )
            options["site"] = replace(self.cluster_site(), avoid_nodes=avoid_nodes)
        folder = self.report_dir / f"load-{len(self._runs) + 1}"
        run = run_load(base_url, shape, report_dir=folder, **options)
        self._runs.append(run)
        return run

    def close(self) -> None:
        for run in self._runs:
            run.close()

    def __enter__(self) -> Load:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_load(base_url: str, shape: Shape | None, *, report_dir: Path, **options: Any) -> LoadRun:
    """Start a load run: `with run_load(url, Ramp(...), report_dir=d) as run: ...`.

    Takes the arguments of `LoadRunner`; returns the running `LoadRun`.
    """
    return LoadRunner(base_url=base_url, shape=shape, report_dir=report_dir, **options).start()


def _parse_target(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
        raise InvalidConfiguration(
            f"load target {base_url!r} is not an http(s) URL with a host",
            fix="pass a base URL like http://127.0.0.1:8080",
        )
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The local networks given, each a private range: a public one (or 0.0.0.0/0) would
    switch off the guard that keeps load on this machine."""
    try:
        networks = [ipaddress.ip_network(cidr) for cidr in cidrs]
    except ValueError as exc:
        raise InvalidConfiguration(
            f"local_networks: {exc}", fix="give CIDRs such as 10.96.0.0/12"
        ) from None
    public = [str(network) for network in networks if not network.is_private]
    if public:
        raise InvalidConfiguration(
            f"local_networks: {', '.join(public)} is not a private range: load there would "
            "leave this machine",
            fix="name only the private ranges a local cluster uses (e.g. its service range "
            "10.96.0.0/12)",
        )
    return networks


def _refuse_off_machine(
    host: str, local_networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    """Load may only go to this machine: loopback, or a local network the project made."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidConfiguration(
            f"load target host {host!r} does not resolve: {exc}",
            fix="use an IP address such as 127.0.0.1, or a name in /etc/hosts",
        ) from None
    for address in {info[4][0] for info in infos}:
        ip = ipaddress.ip_address(address)
        if ip.is_loopback or any(ip in network for network in local_networks):
            continue
        route = _route(address)
        default_dev = {r.get("dev") for r in _routes_default()}
        if "gateway" in route or route.get("dev") in default_dev:
            raise InvalidConfiguration(
                f"load target {host} ({address}) is routed off this machine "
                f"(via {route.get('gateway') or route.get('dev')})",
                fix="target 127.0.0.1 (e.g. through `kubectl port-forward`), an address on a "
                "network the harness created (the local cluster's bridge), or name a range "
                "that stays local in local_networks",
            )


def _route(address: str) -> dict[str, Any]:
    try:
        routes = json.loads(run_command(["ip", "-j", "route", "get", address], timeout=5))
    except (CommandFailed, json.JSONDecodeError) as exc:
        raise InvalidConfiguration(
            f"cannot tell whether load target {address} is on this machine: {exc}",
            fix="target 127.0.0.1, or make sure `ip route get` works (package iproute2)",
        ) from None
    return routes[0] if routes else {}


def _routes_default() -> list[dict[str, Any]]:
    try:
        return json.loads(run_command(["ip", "-j", "route", "show", "default"], timeout=5) or "[]")
    except (CommandFailed, json.JSONDecodeError):
        return []


def _probe(base_url: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        raise TargetUnreachable(
            f"load target {base_url} is unreachable: connecting to {host}:{port} failed "
            f"({exc.strerror or exc})",
            fix="start the service (or `kubectl port-forward` to it) and check host and port; "
            "the harness probes before starting Locust",
        ) from None
