"""harness.load end to end: real Locust processes against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import argparse
import http.server
import math
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kubernetes import client

from harness.errors import InvalidConfiguration
from harness.labels import LOAD_LABEL, LOAD_ROLE_LABEL
from harness.load import (
    SLO,
    Constant,
    Load,
    LoadResult,
    LoadRunner,
    Ramp,
    Shape,
    Spike,
    Step,
    TargetUnreachable,
    cli,
)
from harness.load.cluster import ClusterSite
from harness.paths import HOME_CACHE_DIR
from harness.suite import SCENARIOS
from harness.wait import Pending, wait_for

DATA = Path(__file__).parent / "data" / "load"
# A slow pace per user keeps these runs light on a shared two-core machine.
QUIET = {"DEMO_USER_RPS": "5"}


class TargetServer:
    """A demo-like service: counts what it answers, fails every Nth request or while told to."""

    def __init__(self, *, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.failing = False
        self.lock = threading.Lock()
        self.requests = 0
        self.failures = 0
        self.pods: Counter[str] = Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the demo service does

            def do_GET(self) -> None:
                with server.lock:
                    server.requests += 1
                    n = server.requests
                    fail = server.failing or (server.fail_every and n % server.fail_every == 0)
                    server.failures += bool(fail)
                    pod = f"demo-{n % 2}"
                    server.pods[pod] += 1
                body = b"failed\n" if fail else b'{"build": {"version": "v1-json"}}\n'
                self.send_response(503 if fail else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Pod-Name", pod)
                self.send_header("X-App-Version", "v1")
                self.send_header("X-Other-Pod", f"other-{pod}")  # for custom header names
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> TargetServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def load(tmp_path: Path) -> Iterator[Load]:
    """Like the plugin's `load` fixture, rooted in tmp_path instead of the test's report folder."""
    with Load(tmp_path) as load:
        yield load


@pytest.fixture
def server() -> Iterator[TargetServer]:
    with TargetServer() as server:
        yield server


@pytest.fixture(scope="module")
def every_tenth_fails(tmp_path_factory) -> tuple[LoadResult, TargetServer]:
    """One run shared by the counting and SLO tests: 4 users for 3 s, every 10th answer 503."""
    with TargetServer(fail_every=10) as server, Load(tmp_path_factory.mktemp("load")) as load:
        run = load.run(server.url, Constant(users=4, seconds=3), env=QUIET)
        result = run.result()
    return result, server


def locust_processes(report_dir: Path) -> list[psutil.Process]:
    """Live Locust processes the harness started with reports under `report_dir`."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        alive = proc.info["status"] != psutil.STATUS_ZOMBIE
        if alive and "_locust_entry.py" in cmdline and str(report_dir) in cmdline:
            found.append(proc)
    return found


def gone(pid: int) -> bool | Pending:
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return True if status == psutil.STATUS_ZOMBIE else Pending(f"pid {pid} is {status}")


# -- counting --------------------------------------------------------------------------------


@pytest.mark.slow
def test_failures_are_counted_exactly(every_tenth_fails):
    result, server = every_tenth_fails
    assert result.requests == server.requests > 30
    assert result.total.failures == server.failures == server.requests // 10
    assert result.error_rate == pytest.approx(0.1, abs=0.01)
    assert len(result.failures) == server.failures
    assert all(f.error.endswith("code=503") and server.url in f.error for f in result.failures)
    # the series adds up to the totals
    assert sum(p.requests for p in result.series) == result.requests
    assert sum(p.failures for p in result.series) == result.total.failures


@pytest.mark.slow
def test_per_endpoint_pod_and_version_counts(every_tenth_fails):
    result, server = every_tenth_fails
    assert {e.name for e in result.endpoints} == {"/", "/work", "/version"}
    assert sum(e.requests for e in result.endpoints) == result.requests
    assert result.endpoint("/").requests > result.endpoint("/version").requests
    assert result.pods == dict(server.pods)
    assert result.versions == {"v1": result.requests}
    per_second, versions_per_second = Counter(), Counter()
    for point in result.series:
        per_second.update(point.pods)
        versions_per_second.update(point.versions)
    assert per_second == server.pods
    assert versions_per_second == result.versions


@pytest.mark.slow
def test_the_version_can_come_from_a_json_field_and_unanswered_requests_have_none(load, server):
    server.fail_every = 5
    run = load.run(server.url, Constant(users=2, seconds=2), env=QUIET,
                   version_from="json:build.version")  # fmt: skip
    result = run.result()
    assert result.versions == {"v1-json": result.requests - result.total.failures}
    assert result.total.failures > 0


@pytest.mark.slow
def test_locust_reports_are_kept_in_the_report_folder(every_tenth_fails):
    result, _ = every_tenth_fails
    kept = {p.name for p in result.report_dir.iterdir()}
    assert {
        "locust.html",
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
        "locust.log",
        "load-events.jsonl",
    } <= kept
    assert "/work" in (result.report_dir / "locust_stats.csv").read_text()


@pytest.mark.slow
def test_the_pytest_process_is_never_monkey_patched(every_tenth_fails):
    import gevent.monkey  # importing gevent does not patch; Locust's import would

    assert not gevent.monkey.is_anything_patched()
    assert "locust" not in sys.modules
    assert socket.socket.__module__ == "socket"


@pytest.mark.slow
def test_slo_verdicts_on_a_real_run(every_tenth_fails):
    result, _ = every_tenth_fails
    assert result.reliable, result.unreliable_reason
    passing = SLO(max_error_rate=0.15, max_p95_ms=2000, min_rps=5).evaluate(result)
    assert [v.status for v in passing] == ["pass", "pass", "pass"]
    failing = {v.name: v for v in SLO(max_error_rate=0.05, min_rps=10_000).evaluate(result)}
    assert failing["error rate"].status == "fail"
    assert failing["error rate"].measured == pytest.approx(0.1, abs=0.01)
    assert failing["error rate"].limit == 0.05
    assert failing["throughput"].status == "fail"
    assert failing["throughput"].measured == pytest.approx(result.rps)
    per_endpoint = SLO(endpoints={"/work": SLO(max_p95_ms=5000), "/nowhere": SLO(min_rps=1)})
    assert [(v.name, v.status) for v in per_endpoint.evaluate(result)] == [
        ("GET /work p95 latency", "pass"),
        ("GET /nowhere throughput", "fail"),
    ]


# -- shapes ----------------------------------------------------------------------------------


def assert_users_follow(result: LoadResult, shape: Shape) -> None:
    """Each second's user count (taken at its end) is one the shape promised around then.

    Locust starts users in one batch per second at the spawn rate (a batch can come up to a
    second before the straight line of a ramp reaches it) and the count is sampled once a
    second, so a count may lead the promise by 1 s or trail it by 1.5 s.
    """
    checked = 0
    for point in result.series:
        t = point.t + 1 - result.started
        if t > shape.duration - 0.5:
            break
        # Before the start nothing is promised: the first count may trail from 0 users.
        window = [
            shape.users_at(t - lag / 10) if t - lag / 10 >= 0 else 0 for lag in range(-10, 16)
        ]
        assert min(window) <= point.users <= max(window), (
            f"{t:.1f}s into {shape}: {point.users} users, promised {min(window)}..{max(window)}\n"
            + "\n".join(f"  {p.t + 1 - result.started:5.1f}s {p.users}" for p in result.series)
        )
        checked += 1
    assert checked >= math.floor(shape.duration) - 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "shape",
    [
        Ramp(users=6, ramp_time=3, hold=1),
        Step(step_users=2, step_time=2, steps=3),
        Spike(users=1, spike_users=5, spike_at=2, spike_time=2, seconds=5),
    ],
    ids=lambda s: s.kind,
)
def test_shapes_produce_the_user_counts_they_promise(load, server, shape):
    result = load.run(server.url, shape, env=QUIET).result()
    assert_users_follow(result, shape)
    assert max(p.users for p in result.series) == max(
        shape.users_at(t / 10) for t in range(int(shape.duration * 10))
    )


@pytest.mark.slow
def test_a_locustfile_can_use_the_shapes_of_loadtests(load, server):
    run = load.run(server.url, None, locustfile=DATA / "step-shape-locustfile.py", time_limit=15)
    result = run.result()
    assert not run.time_limit_hit
    assert_users_follow(result, Step(step_users=2, step_time=1.5, steps=3))


def test_bad_shape_attributes_in_a_locustfile_are_named(load, server):
    with pytest.raises(InvalidConfiguration) as caught:
        load.run(server.url, None, locustfile=DATA / "invalid-shape-locustfile.py", time_limit=5)
    assert "spike load shape: spike_users=3 is invalid (spike_users > users)" in str(caught.value)


# -- the context manager, time and the cluster clock -------------------------------------------


@pytest.mark.slow
def test_failures_line_up_with_a_fault_injected_meanwhile(load, server):
    before = time.time()
    with load.run(server.url, Constant(users=3, seconds=30), env=QUIET) as run:
        wait_for(
            lambda: run.series() or Pending("no second closed yet"),
            what="a first second",
            timeout=10,
            interval=0.2,
        )
        fault_start = time.time()
        server.failing = True
        wait_for(
            lambda: server.failures >= 5 or Pending(f"{server.failures} failures"),
            what="the fault to show",
            timeout=10,
            interval=0.1,
        )
        server.failing = False
        fault_end = time.time()
        wait_for(
            lambda: any(p.t > fault_end for p in run.series()) or Pending("fault second"),
            what="a second after the fault",
            timeout=10,
            interval=0.2,
        )
    result = run.result()  # leaving the block stopped the 30 s run early
    after = time.time()
    assert result.ended - result.started < 20
    # users finished their last request before Locust counted: both sides agree exactly
    assert result.requests == server.requests
    assert result.total.failures == server.failures == len(result.failures)
    assert result.failures_between(fault_start, fault_end) == result.failures
    assert all(before <= f.t <= f.end <= after for f in result.failures)
    assert result.series_between(fault_start, fault_end)
    assert sum(p.failures for p in result.series_between(fault_start, fault_end)) == server.failures
    assert result.error_rate_between(fault_start, fault_end) > 0
    assert result.error_rate_between(result.started, fault_start - 1) == 0


@pytest.mark.slow
def test_time_limit_stops_a_locustfile_shape_that_never_ends(load, server, tmp_path):
    run = load.run(
        server.url,
        None,
        locustfile=DATA / "endless-shape-locustfile.py",
        time_limit=3,
        stop_timeout=1,
    )
    result = run.result()
    assert run.time_limit_hit
    assert 2.5 <= result.ended - result.started <= 6
    assert result.requests > 0
    assert not locust_processes(tmp_path)


# -- Locust's distributed mode: a master and workers on this machine --------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> tuple[LoadResult, TargetServer]:
    """One run of a master and two workers: 6 users for 4 s, every 10th answer 503."""
    with TargetServer(fail_every=10) as server, Load(tmp_path_factory.mktemp("load")) as load:
        run = load.run(server.url, Constant(users=6, seconds=4), env=QUIET, workers=2)
        result = run.result()
    return result, server


@pytest.mark.slow
def test_workers_records_come_back_merged_and_exact(two_workers):
    result, server = two_workers
    # Every request the target answered is counted once: the last seconds of each worker
    # reach the master before it ends (Locust alone gives them 0.5 s).
    assert result.requests == server.requests > 50
    assert result.total.failures == server.failures == len(result.failures)
    assert sum(p.requests for p in result.series) == result.requests
    assert sum(p.failures for p in result.series) == result.total.failures
    assert result.pods == dict(server.pods)
    assert result.versions == {"v1": result.requests}
    assert max(p.users for p in result.series) == 6


@pytest.mark.slow
def test_each_worker_is_named_with_its_share_and_cpu(two_workers):
    result, _ = two_workers
    workers = result.generator.workers
    assert len(workers) == 2 and result.generator.placement == "host"
    assert all(w.requests > 0 and w.cpu for w in workers), result.generator.describe()
    assert sum(w.requests for w in workers) == result.requests
    assert result.reliable, result.unreliable_reason
    assert "2 Locust processes" in result.summary()
    logs = sorted(p.name for p in result.report_dir.glob("locust-worker-*.log"))
    assert logs == ["locust-worker-1.log", "locust-worker-2.log"]


@pytest.mark.slow
def test_shapes_apply_to_the_whole_distributed_run(load, server):
    shape = Step(step_users=2, step_time=2, steps=3)
    result = load.run(server.url, shape, env=QUIET, workers=2).result()
    assert_users_follow(result, shape)
    assert max(p.users for p in result.series) == 6


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_and_makes_the_run_unreliable(load, server):
    with load.run(server.url, Constant(users=4, seconds=12), env=QUIET, workers=2) as run:
        wait_for(
            lambda: len(run.series()) >= 2 or Pending("no second yet"), what="load", timeout=20
        )
        psutil.Process(run.pids[2]).kill()
        result = run.result()
    assert not result.reliable
    assert "load generator saturated" in result.unreliable_reason
    assert "was lost" in result.unreliable_reason
    assert [w.lost_at is not None for w in result.generator.workers].count(True) == 1


@pytest.mark.slow
def test_the_master_listens_on_this_machine_only(load, server):
    with load.run(server.url, Constant(users=1, seconds=3), env=QUIET, workers=1) as run:
        master = psutil.Process(run.pids[0])
        listening = [c.laddr for c in master.net_connections("tcp") if c.status == "LISTEN"]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening


@pytest.mark.parametrize("workers", [-1, 1.5, True])
def test_a_bad_worker_count_is_refused(load, server, workers):
    with pytest.raises(InvalidConfiguration, match=r"load workers .* is not a whole number"):
        load.run(server.url, Constant(users=1, seconds=1), workers=workers)


# -- the generator's own CPU ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_saturated_generator_marks_the_result_unreliable(load, server):
    run = load.run(server.url, Constant(users=2, seconds=5), locustfile=DATA / "busy-locustfile.py")
    result = run.result()
    assert not result.reliable, f"busy samples: {[s.busy for s in result.cpu]}"
    assert "load generator saturated" in result.unreliable_reason
    verdicts = SLO(min_rps=10_000).evaluate(result)
    assert [v.status for v in verdicts] == ["inconclusive", "inconclusive"]
    assert verdicts[1].name == "load generator busy"


# -- bad input and clean-up ------------------------------------------------------------------


def test_an_unreachable_target_is_reported_within_seconds(load, tmp_path):
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as caught:
        load.run(url, Constant(users=1, seconds=5))
    assert time.monotonic() - started < 5
    assert url in str(caught.value)
    assert "port-forward" in caught.value.fix
    assert not locust_processes(tmp_path)


def test_an_off_machine_target_is_refused_before_any_traffic(load):
    # refused from the routing table alone (or, without a route, because it cannot be checked)
    off_machine = (
        r"203\.0\.113\.7 .*is routed off this machine"
        r"|cannot tell whether load target 203\.0\.113\.7 is on this machine"
    )
    with pytest.raises(InvalidConfiguration, match=off_machine):
        load.run("http://203.0.113.7:80", Constant(users=1, seconds=5))


def test_local_networks_let_a_routed_range_count_as_this_machine(tmp_path):
    # construction checks the address only; nothing is sent
    shape = Constant(users=1, seconds=5)
    runner = LoadRunner(base_url="http://203.0.113.7", shape=shape, report_dir=tmp_path,
                        local_networks=["203.0.113.0/24"])  # fmt: skip
    assert runner.port == 80
    with pytest.raises(InvalidConfiguration, match=r"local_networks: .*does not appear to be"):
        LoadRunner(base_url="http://127.0.0.1:1", shape=shape, report_dir=tmp_path,
                   local_networks=["not-a-network"])  # fmt: skip


@pytest.mark.parametrize("network", ["0.0.0.0/0", "8.8.8.0/24", "::/0"])
def test_a_public_local_network_would_switch_the_guard_off_and_is_refused(tmp_path, network):
    with pytest.raises(InvalidConfiguration, match="is not a private range") as caught:
        LoadRunner(base_url="http://8.8.8.8", shape=Constant(users=1, seconds=5),
                   report_dir=tmp_path, local_networks=[network])  # fmt: skip
    assert "10.96.0.0/12" in caught.value.fix


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:8080", "http://127.0.0.1:99999", "ftp://127.0.0.1/"],
)
def test_a_malformed_url_is_refused(load, url):
    with pytest.raises(InvalidConfiguration, match=r"is not an http\(s\) URL with a host"):
        load.run(url, Constant(users=1, seconds=5))


def test_a_locustfile_import_error_is_clear(load, server, tmp_path):
    started = time.monotonic()
    with pytest.raises(InvalidConfiguration) as caught:
        load.run(
            server.url,
            Constant(users=1, seconds=5),
            locustfile=DATA / "invalid-locustfile-import.py",
        )
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert "before the load started, loading" in message
    assert "No module named 'no_such_module_for_harness_tests'" in message
    assert not locust_processes(tmp_path)


def test_a_missing_locustfile_is_refused(load, server):
    with pytest.raises(InvalidConfiguration, match=r"locustfile .*nothing\.py does not exist"):
        load.run(server.url, Constant(users=1, seconds=5), locustfile=DATA / "nothing.py")


def test_an_exception_in_the_block_kills_locust(load, server, tmp_path):
    with pytest.raises(RuntimeError), load.run(server.url, Constant(users=1, seconds=30)) as run:
        pid = run.pids[0]
        raise RuntimeError("the test failed while load was running")
    assert wait_for(lambda: gone(pid), what="Locust to go", timeout=5, interval=0.1)
    assert not locust_processes(tmp_path)


PARENT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from harness.load import Constant, run_load
    run = run_load(sys.argv[1], Constant(users=1, seconds=60), report_dir=Path(sys.argv[2]))
    print(run.pids[0], flush=True)
    time.sleep(60)
    """
)


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill -9"])
def test_an_interrupted_parent_leaves_no_locust_behind(server, tmp_path, how):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, server.url, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    try:
        locust_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(locust_pid)
        parent.send_signal(how)
        parent.wait(timeout=20)
        assert wait_for(lambda: gone(locust_pid), what="Locust to go", timeout=10, interval=0.1)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert not locust_processes(tmp_path)


# -- the command line ------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_load_run_prints_the_result_and_judges_the_slo(server, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="harness")
    cli.register(parser.add_subparsers(dest="command", required=True))
    slo = tmp_path / "slo.yaml"
    slo.write_text("error_rate: 0%\nmin_rps: 1\n")
    server.fail_every = 4
    args = parser.parse_args(
        f"load run --url {server.url} --shape constant:users=2,seconds=2 --slo {slo} "
        f"--report-dir {tmp_path / 'r'} --pod-header x-other-pod --env DEMO_USER_RPS=5".split()
    )
    assert args.func(args) == 1
    out = capsys.readouterr()
    assert f"load against {server.url}" in out.out
    assert f"error rate: {server.failures / server.requests:.2%} (limit 0.00%): fail" in out.out
    assert "throughput:" in out.out and ": pass" in out.out
    assert "served by: other-demo-0=" in out.out
    assert "load: 2 users" in out.err
    assert (tmp_path / "r" / "locust.html").exists()


# -- end to end: the demo service on the real cluster ---------------------------------------


def test_load_against_the_demo_service_on_the_cluster(deployed, load):
    """A master and two workers on the host, through the NodePort on 127.0.0.1: every request
    counted, per pod and version (one process does the same in every scenario)."""
    workers = 2
    with load.run(
        deployed.base_url,
        Constant(users=4, seconds=8),
        env={"DEMO_USER_RPS": "5", "DEMO_WORK_MS": "5"},
        workers=workers,
    ) as run:
        run.wait()
    result = run.result()
    assert result.requests > 100
    assert result.failures == []
    assert set(result.pods) == set(deployed.pods())  # both replicas served
    assert sum(result.pods.values()) == result.requests
    assert result.versions == {"v1": result.requests}
    assert {e.name for e in result.endpoints} == {"/", "/work", "/version"}
    assert all(v.passed for v in SLO(max_error_rate=0, min_rps=10).evaluate(result))
    assert (result.report_dir / "locust_stats.csv").is_file()
    assert len(result.generator.workers) == workers
    assert sum(w.requests for w in result.generator.workers) == result.requests


@pytest.mark.parametrize("workers", [0, 2], ids=["one-pod", "master-and-2-worker-pods"])
def test_load_from_the_cluster_reaches_the_service_by_its_name(
    deployed, load, workers, kube_api, namespace, load_image, timeline
):
    """Locust as pods beside the service, through its ClusterIP Service: nothing on the host."""
    site = ClusterSite(kube_api, namespace, load_image)
    with load.run(
        deployed.service_url,
        Constant(users=4, seconds=8),
        env={"DEMO_USER_RPS": "5", "DEMO_WORK_MS": "5"},
        workers=workers,
        placement="cluster",
        site=site,
    ) as run:
        run.wait()  # the run's pods stay until its block ends
        pods = kube_api.core.list_namespaced_pod(namespace, label_selector=LOAD_LABEL).items
        networking = client.NetworkingV1Api(kube_api.api_client)
        policy = networking.list_namespaced_network_policy(namespace, label_selector=LOAD_LABEL)
    result = run.result()
    assert result.requests > 100 and result.failures == []
    assert set(result.pods) == set(deployed.pods())
    assert sum(result.pods.values()) == result.requests
    assert result.generator.placement == "cluster"
    assert len(result.generator.workers) == max(workers, 1)
    # Locust's own reports come back as the host runner's do.
    assert "Aggregated" in (result.report_dir / "locust_stats.csv").read_text()
    assert (result.report_dir / "locust.html").read_text().rstrip().endswith("</html>")
    assert all(w.requests > 0 and w.cpu for w in result.generator.workers)
    assert result.reliable, result.unreliable_reason
    assert len(pods) == workers + 1
    assert all(p.spec.active_deadline_seconds for p in pods)
    # Workers spread over the nodes that take pods (kind's two workers; local's one node).
    nodes = [n for n in kube_api.core.list_node().items if not n.spec.taints]
    placed = {p.spec.node_name for p in pods if p.metadata.labels[LOAD_ROLE_LABEL] == "worker"}
    assert len(placed) == min(workers, len(nodes))
    (egress,) = policy.items
    assert egress.spec.policy_types == ["Egress", "Ingress"]
    # The Service's name resolves from each pod's /etc/hosts, not through the cluster's DNS.
    service_host = urllib.parse.urlsplit(deployed.service_url).hostname
    assert all(p.spec.host_aliases[0].hostnames == [service_host] for p in pods)
    # The load pods are no pods of the service: the timeline that checks read leaves them out.
    recorded = {e.name for e in timeline.timeline().of("Pod")}
    assert recorded >= set(deployed.pods()) and not recorded & {p.metadata.name for p in pods}
    wait_for(
        lambda: (
            not kube_api.core.list_namespaced_pod(namespace, label_selector=LOAD_LABEL).items
            or Pending("load pods still there")
        ),
        what="the load pods to be deleted",
        timeout=60,
    )


def test_load_pods_open_connections_only_to_their_target(
    deployed, load, kube_api, namespace, load_image
):
    """The pods' own egress rule refuses what the locustfile should not reach (the node's
    kubelet, another Service of the cluster), whatever the network plugin enforces; the
    target Service and the master stay reachable."""
    node_ip = next(
        a.address
        for a in kube_api.core.list_node().items[0].status.addresses
        if a.type == "InternalIP"
    )
    api_service = kube_api.core.read_namespaced_service("kubernetes", "default").spec.cluster_ip
    probes = [f"{node_ip}:10250", f"{api_service}:443"]
    run = load.run(
        deployed.service_url,
        Constant(users=2, seconds=6),
        locustfile=DATA / "egress-probe-locustfile.py",
        env={"EGRESS_PROBES": ",".join(probes)},
        workers=1,
        placement="cluster",
        site=ClusterSite(kube_api, namespace, load_image),
    )
    result = run.result()
    refused = Counter(f.name for f in result.failures if "refused" in f.error.lower())
    assert refused == {f"connect {probe}": 2 for probe in probes}, result.failures
    assert len(result.failures) == 4
    assert result.requests > 20 and result.reliable, result.unreliable_reason


def test_load_from_the_cluster_on_an_existing_cluster(
    pytester, monkeypatch, cluster, service_images, load_image
):
    """The nightly target: a cluster the harness does not run, reached only by its API. This
    cluster, taken as `existing` by a pytest of its own, with load from the cluster: the
    images its nodes already hold are used as they are, and the scenario is judged."""
    # The inner run's cache is this one (pytester gives it a home of its own). Under a name
    # of its own, it finds no note of images loaded: it must see them on the nodes.
    monkeypatch.setenv("HOME", str(HOME_CACHE_DIR.parents[1]))
    result = pytester.runpytest_subprocess(
        "--cluster-provider=existing",
        f"--kubeconfig={cluster.kubeconfig()}",
        "--cluster-name=seen-as-existing",
        "--allow-chaos-on-existing",
        "--load-placement=cluster",
        "--run-id=existing-cluster-load",
        "-p",
        "no:randomly",
        "-k",
        "deleted_pod",
        str(SCENARIOS / "test_self_healing.py"),
        timeout=600,
    )
    output = result.stdout.str()
    assert result.ret == 0, output[-4000:] + result.stderr.str()[-2000:]
    result.assert_outcomes(passed=1)
    assert re.search(r"existing: localhost/kube-harness/locust:\w+ is on every node", output)
    assert "PytestUnhandledThreadExceptionWarning" not in output
    assert re.search(r"load: Locust \(pods locust-\w+-\* in kh-", output), output[-4000:]
