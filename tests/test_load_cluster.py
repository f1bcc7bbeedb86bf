"""Load from the cluster: the target Service's address and the load pods' egress rule (pure
logic and a fake API; the end-to-end runs are in tests/test_load.py)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from kubernetes.client.exceptions import ApiException

from harness.errors import InvalidConfiguration
from harness.load import _locust_entry
from harness.load.cluster import (
    ClusterSite,
    LocustPods,
    ServiceAddress,
    egress_rules,
    find_service,
    service_named,
)


def fake_kube(**services: SimpleNamespace) -> SimpleNamespace:
    asked: list[tuple[str, str]] = []

    def read_namespaced_service(name: str, namespace: str) -> SimpleNamespace:
        asked.append((name, namespace))
        if f"{namespace}/{name}" not in services:
            raise ApiException(status=404, reason="Not Found")
        return services[f"{namespace}/{name}"]

    return SimpleNamespace(
        core=SimpleNamespace(read_namespaced_service=read_namespaced_service), asked=asked
    )


def service(cluster_ip: str | None, kind: str = "ClusterIP") -> SimpleNamespace:
    return SimpleNamespace(spec=SimpleNamespace(cluster_ip=cluster_ip, type=kind))


@pytest.mark.parametrize(
    "host",
    ["demo", "demo.t1.svc", "demo.t1.svc.cluster.local"],
)
def test_every_in_cluster_form_of_a_service_name_finds_its_cluster_ip(host):
    kube = fake_kube(**{"t1/demo": service("10.96.0.20")})
    assert find_service(kube, host, 80, "t1") == ServiceAddress("demo", "t1", "10.96.0.20", 80)


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "demo.t1", "example.com", "demo.t1.svc.example.org"]
)
def test_a_host_that_is_no_service_of_the_cluster_is_refused_before_any_pod(host):
    with pytest.raises(InvalidConfiguration, match=f"not to {host}") as info:
        service_named(host)
    assert "Deployed.service_url" in info.value.fix


def test_a_name_with_another_namespace_is_looked_up_there():
    kube = fake_kube(**{"other/api": service("10.96.0.30")})
    assert find_service(kube, "api.other.svc", 8080, "t1").cluster_ip == "10.96.0.30"
    assert kube.asked == [("api", "other")]


def test_a_missing_service_is_named_with_its_namespace():
    with pytest.raises(InvalidConfiguration, match="no Service demo in namespace t1") as info:
        find_service(fake_kube(), "demo.t1.svc", 80, "t1")
    assert "Deployed.service_url" in info.value.fix


@pytest.mark.parametrize("cluster_ip", ["None", None])
def test_a_service_without_a_cluster_ip_is_refused(cluster_ip):
    kube = fake_kube(**{"t1/demo": service(cluster_ip, "ExternalName")})
    with pytest.raises(InvalidConfiguration, match="has no ClusterIP"):
        find_service(kube, "demo", 80, "t1")


def test_the_egress_rule_opens_only_the_target_and_the_master():
    ipv4, ipv6 = egress_rules([("10.96.0.20", 80), ("10.244.0.7", 5557)])
    lines = ipv4.splitlines()
    accepts = [line for line in lines if line.startswith("-A OUTPUT -p tcp")]
    assert accepts == [
        "-A OUTPUT -p tcp -d 10.96.0.20 --dport 80 -j ACCEPT",
        "-A OUTPUT -p tcp -d 10.244.0.7 --dport 5557 -j ACCEPT",
    ]
    # Loopback and replies first, everything else refused last; the table is committed.
    assert lines.index("-A OUTPUT -o lo -j ACCEPT") < lines.index(accepts[0])
    assert lines[-2:] == ["-A OUTPUT -j REJECT", "COMMIT"] and ipv4.endswith("\n")
    assert "-p tcp" not in ipv6 and "-A OUTPUT -j REJECT" in ipv6


def test_an_ipv6_target_goes_into_the_ipv6_table():
    ipv4, ipv6 = egress_rules([("fd00:10:96::20", 80)])
    assert "-A OUTPUT -p tcp -d fd00:10:96::20 --dport 80 -j ACCEPT" in ipv6
    assert "fd00" not in ipv4


def pods_whose_log_answers(
    tmp_path, answers: list, *, pod_exists: bool = True, ended: bool = False
) -> LocustPods:
    """A run whose API answers the log requests with `answers`, in turn; its pod runs (or
    has `ended`, or without `pod_exists`, is gone)."""

    def read_namespaced_pod(*_: object, **__: object) -> SimpleNamespace:
        if not pod_exists:
            raise ApiException(status=404, reason="Not Found")
        container = SimpleNamespace(state=SimpleNamespace(terminated=ended or None))
        return SimpleNamespace(status=SimpleNamespace(container_statuses=[container]))

    def read_namespaced_pod_log(*_: object, **__: object) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    core = SimpleNamespace(
        read_namespaced_pod_log=read_namespaced_pod_log, read_namespaced_pod=read_namespaced_pod
    )
    return LocustPods(
        ClusterSite(SimpleNamespace(core=core), "t1", "img"),
        target_host="demo",
        target_port=80,
        locustfile=tmp_path / "locustfile.py",
        with_shape=False,
        workers=0,
        deadline_s=10,
        events_path=tmp_path / "events.jsonl",
        log_path=tmp_path / "locust.log",
    )


def test_a_log_the_kubelet_does_not_serve_for_a_moment_is_waited_for(tmp_path):
    """A kubelet restart closes every log stream of its node; until it is back the API
    server answers 500 for the log, and then the kubelet 404 until it knows its pods again:
    the follower waits, then goes on where it was."""
    answers = [
        ApiException(status=500, reason="kubelet down"),
        ApiException(status=404, reason="pod not known yet"),
        "log",
    ]
    assert pods_whose_log_answers(tmp_path, answers)._open_log("locust-1-master") == "log"
    assert answers == []


def test_the_log_of_a_pod_that_is_gone_ends_the_copy(tmp_path):
    answers = [ApiException(status=404, reason="Not Found")]
    gone = pods_whose_log_answers(tmp_path, answers, pod_exists=False)
    assert gone._open_log("locust-1-master") is None


def log_stream(text: str) -> SimpleNamespace:
    data = text.encode()
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    return SimpleNamespace(stream=lambda *_, **__: iter(chunks), release_conn=lambda: None)


def test_the_masters_locust_reports_come_back_through_its_log(tmp_path, capsys):
    """A pod's files are out of the harness's reach once it ends: the master prints its
    Locust CSV and HTML at its exit, in marked lines short enough for the runtime's log,
    and the follower writes them into the run's report folder by their bare names."""
    reports = tmp_path / "pod-reports"
    reports.mkdir()
    html = "<html>" + 'é"<' * 3000 + "</html>\n"
    (reports / "locust.html").write_text(html)
    (reports / "locust_stats.csv").write_text("Type,Name\n,Aggregated\n")
    _locust_entry._print_reports(reports)
    printed = capsys.readouterr().out
    assert all(len(line.encode()) < 16 * 1024 for line in printed.splitlines())
    hostile = _locust_entry.REPORT_MARKER + json.dumps({"file": "../locust.x", "text": "x"})
    log = "Locust starting\n" + printed + hostile + "\n"

    run = tmp_path / "run"
    run.mkdir()
    pods = pods_whose_log_answers(tmp_path, [log_stream(log)], ended=True)
    pods.log_path = run / "locust.log"
    pods._copy_log("locust-1-master", pods.log_path, records=True)
    assert (run / "locust.html").read_text() == html
    assert (run / "locust_stats.csv").read_text() == "Type,Name\n,Aggregated\n"
    assert (run / "locust.x").read_text() == "x"  # in the report folder, nowhere else
    assert "Locust starting" in pods.log_path.read_text()
    assert _locust_entry.REPORT_MARKER not in pods.log_path.read_text()


def test_load_pods_keep_off_the_nodes_a_test_will_stop(tmp_path):
    """A node failure test stops one node: Locust pods there would die with it."""
    pods = pods_whose_log_answers(tmp_path, [])
    pods.target = ServiceAddress("demo", "t1", "10.96.0.20", 80)
    assert pods._pod("run-master", "master", [], {}, None).spec.affinity is None

    pods.site = ClusterSite(pods.site.kube, "t1", "img", avoid_nodes=("node-1",))
    pod = pods._pod("run-worker-1", "worker", [], {}, "10.244.0.7")
    terms = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    (away,) = terms.node_selector_terms[0].match_expressions
    assert (away.key, away.operator, away.values) == ("kubernetes.io/hostname", "NotIn", ["node-1"])
