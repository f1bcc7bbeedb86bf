"""NetworkPolicy (harness.network_policy): what policies admit, the probes and ports that
tell them apart, the enforcer's install manifests, the checks that judge the matrix, and
the scenario failing on a policy that admits more than the spec promises."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shell_stubs import run_script
from suite_runs import ROOT, SCENARIOS, run_example

from harness.assertions import connectivity_as_promised, connectivity_enforced
from harness.network_policy import (
    LISTENER,
    PROBE_LABELS,
    PROBE_SCRIPT,
    UNUSED_PORT,
    Admission,
    Pair,
    Peer,
    Probe,
    admits,
    install_manifests,
    listener_container,
    plan_probes,
    policies_of,
    probe_pod,
    probed_ports,
    read_probe_log,
    selects,
)
from harness.render import render
from harness.spec import InvalidSpec, NetworkPolicyExpectation, load_spec
from harness.workload import spec_problems

SERVER = {"app.kubernetes.io/component": "server"}
DEMO_POLICY = {
    "kind": "NetworkPolicy",
    "metadata": {"name": "demo", "namespace": "shop"},
    "spec": {
        "podSelector": {"matchLabels": SERVER},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"protocol": "TCP", "port": 8080}]}],
    },
}
FRONTEND_ONLY = {
    "kind": "NetworkPolicy",
    "metadata": {"name": "frontend", "namespace": "shop"},
    "spec": {
        "podSelector": {"matchLabels": SERVER},
        "ingress": [
            {
                "from": [
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                    {
                        "namespaceSelector": {"matchLabels": {"team": "edge"}},
                        "podSelector": {"matchLabels": {"role": "gateway"}},
                    },
                ],
                "ports": [{"port": "http"}],
            }
        ],
    },
}
DENY_EGRESS = {
    "kind": "NetworkPolicy",
    "metadata": {"name": "no-egress", "namespace": "shop"},
    "spec": {"podSelector": {}, "policyTypes": ["Egress"]},
}
TARGET = Peer(
    "shop", labels=SERVER, ip="10.0.0.5", named_ports={"http": 8080}, container_ports=(8080,)
)


def test_selectors_match_labels_and_expressions() -> None:
    labels = {"app": "demo", "tier": "web"}
    assert selects({"matchLabels": {"app": "demo"}}, labels)
    assert not selects({"matchLabels": {"app": "other"}}, labels)
    assert selects(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, labels
    )
    assert not selects(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, labels
    )
    assert not selects({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert selects({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert selects(None, {}) and selects({}, labels)


def test_a_policy_admits_its_ports_from_anywhere_and_drops_the_others() -> None:
    other = Peer("elsewhere")
    assert admits([DEMO_POLICY], other, TARGET, port=8080).allowed
    dropped = admits([DEMO_POLICY], other, TARGET, port=UNUSED_PORT)
    assert dropped == Admission(
        False, "NetworkPolicy demo selects it and no ingress rule admits it"
    )
    assert admits([DEMO_POLICY], other, Peer("shop", labels={"app": "db"}), port=9).allowed


def test_from_peers_name_pods_namespaces_and_named_ports() -> None:
    policies = [FRONTEND_ONLY]
    frontend = Peer("shop", labels={"role": "frontend"})
    assert admits(policies, frontend, TARGET, port=8080).allowed
    assert not admits(policies, frontend, TARGET, port=8081).allowed
    assert not admits(policies, Peer("shop"), TARGET, port=8080).allowed
    gateway = Peer("edge-ns", labels={"role": "gateway"}, namespace_labels={"team": "edge"})
    assert admits(policies, gateway, TARGET, port=8080).allowed
    assert not admits(
        policies, Peer("other", labels={"role": "gateway"}), TARGET, port=8080
    ).allowed
    # A pod of another namespace matching only the podSelector is not in the policy's namespace.
    assert not admits(
        policies, Peer("other", labels={"role": "frontend"}), TARGET, port=8080
    ).allowed


def test_the_sources_egress_counts_too_and_ip_blocks_match_addresses() -> None:
    source = Peer("shop", labels={"role": "client"})
    dns = Peer("kube-system", labels={"k8s-app": "kube-dns"})
    verdict = admits([DENY_EGRESS], source, dns, port=53, protocol="UDP")
    assert not verdict.allowed and verdict.why.startswith(
        "the source's egress: NetworkPolicy no-egress"
    )
    block = {
        "kind": "NetworkPolicy",
        "metadata": {"name": "cidr", "namespace": "shop"},
        "spec": {
            "podSelector": {},
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.1.0.0/16", "except": ["10.1.9.0/24"]}}]}
            ],
        },
    }
    assert admits([block], Peer("x", ip="10.1.2.3"), TARGET, port=1).allowed
    assert not admits([block], Peer("x", ip="10.1.9.3"), TARGET, port=1).allowed
    assert not admits([block], Peer("x"), TARGET, port=1).allowed


def test_probes_cover_each_peer_a_policy_names_and_ports_include_an_unused_one() -> None:
    probes = plan_probes(
        [DEMO_POLICY, FRONTEND_ONLY], namespace="shop", namespace_labels={"team": "shop"}
    )
    assert all(p.peer.labels[k] == v for p in probes for k, v in PROBE_LABELS.items())
    where = {
        (p.peer.namespace, tuple(sorted(set(p.peer.labels.items()) - set(PROBE_LABELS.items()))))
        for p in probes
    }
    assert where == {
        ("shop", ()),
        ("shop-peer", ()),
        ("shop", (("role", "frontend"),)),
        ("shop-peer2", (("role", "gateway"),)),
    }
    gateway = next(p for p in probes if p.peer.labels.get("role") == "gateway")
    assert gateway.peer.namespace_labels["team"] == "edge"
    plain = next(p for p in probes if p.name == "probe-plain")
    assert plain.peer.namespace_labels == {"team": "shop", "kubernetes.io/metadata.name": "shop"}
    assert "frontend ingress[0]" in gateway.about
    assert probed_ports([DEMO_POLICY], TARGET, [8080]) == [8080, UNUSED_PORT]


def test_policies_of_rendered_manifests_are_put_in_the_namespace_applied_to() -> None:
    objects = [
        {"kind": "Service", "metadata": {"name": "demo"}},
        {**DEMO_POLICY, "metadata": {"name": "demo"}},
    ]
    assert [p["metadata"] for p in policies_of(objects, "ns1")] == [
        {"name": "demo", "namespace": "ns1"}
    ]


def test_a_probe_pod_never_pulls_and_its_log_is_read_back() -> None:
    probe = Probe("probe-1", Peer("shop", labels={"role": "frontend"}), "a frontend")
    pod = probe_pod(probe, image="localhost/kube-harness/busybox:1.35", target_ip="10.0.0.5",
                    ports=[9, 8080], dns_name="demo.shop.svc")  # fmt: skip
    container = pod["spec"]["containers"][0]
    assert (
        container["imagePullPolicy"] == "IfNotPresent" and pod["spec"]["restartPolicy"] == "Never"
    )
    assert {"name": "PORTS", "value": "9 8080"} in container["env"]
    assert pod["metadata"]["labels"]["role"] == "frontend"
    log = "TCP 9 timed out\nTCP 8080 connected\nDNS 53 error: can't resolve\nnoise\n"
    assert read_probe_log(log) == {
        ("TCP", 9): "timed out", ("TCP", 8080): "connected", ("DNS", 53): "error: can't resolve"
    }  # fmt: skip


FIREWALL = """
kind: ConfigMap
metadata: {name: kube-router-cfg, namespace: kube-system}
---
kind: DaemonSet
metadata: {name: kube-router, namespace: kube-system}
spec:
  template:
    spec:
      hostNetwork: true
      containers:
        - name: kube-router
          image: docker.io/cloudnativelabs/kube-router
          imagePullPolicy: Always
          args: [--run-router=false, --run-firewall=true, --run-service-proxy=false,
                 --kubeconfig=/var/lib/kube-router/kubeconfig]
          env:
            - {name: NODE_NAME, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
            - {name: KUBE_ROUTER_CNI_CONF_FILE, value: /etc/cni/net.d/10-kuberouter.conflist}
          volumeMounts: [{name: cni-conf-dir, mountPath: /etc/cni/net.d}]
      initContainers: [{name: install-cni, image: docker.io/cloudnativelabs/kube-router}]
      volumes: [{name: cni-conf-dir, hostPath: {path: /etc/cni/net.d}}]
"""
RBAC = """
kind: DaemonSet
metadata: {name: kube-router}
---
kind: ServiceAccount
metadata: {name: kube-router, namespace: kube-system}
---
kind: ClusterRole
metadata: {name: kube-router}
---
kind: ClusterRoleBinding
metadata: {name: kube-router}
"""


def test_the_enforcer_is_the_firewall_alone_on_the_image_built_here_without_host_folders() -> None:
    made = install_manifests(FIREWALL, RBAC, image="localhost/kube-harness/kube-router:v2.1.0",
                             service_cidrs=["10.96.0.0/16"])  # fmt: skip
    assert [m["kind"] for m in made] == [
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet"
    ]  # fmt: skip
    pod = made[-1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "localhost/kube-harness/kube-router:v2.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert "--run-firewall=true" in container["args"] and "--run-router=false" in container["args"]
    assert "--service-cluster-ip-range=10.96.0.0/16" in container["args"]
    assert not any(a.startswith("--kubeconfig") for a in container["args"])
    assert [e["name"] for e in container["env"]] == ["NODE_NAME"]
    assert "volumes" not in pod and "initContainers" not in pod and "volumeMounts" not in container
    assert pod["serviceAccountName"] == "kube-router"


def test_the_listener_takes_the_ports_the_service_leaves_and_says_which() -> None:
    container = listener_container("localhost/kube-harness/busybox:1.35", [39999, 9090])
    assert container["name"] == LISTENER and container["imagePullPolicy"] == "IfNotPresent"
    assert {"name": "PORTS", "value": "39999 9090"} in container["env"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    said = read_probe_log("LISTEN 39999 ok\nLISTEN 9090 failed\n")
    assert said == {("LISTEN", 39999): "ok", ("LISTEN", 9090): "failed"}


def _pair(port: int, *, allowed: bool, promised: bool, seen: str, namespace: str = "shop") -> Pair:
    probe = Probe("probe-plain", Peer(namespace), f"a pod of {namespace}")
    return Pair(probe, port, "TCP", Admission(allowed, "rule x"), promised, seen)


def _judge(pairs: list[Pair]):
    enforced = connectivity_enforced(pairs, target="demo-1", since=0.0, until=1.0)
    promised = connectivity_as_promised(
        pairs, target="demo-1", promise="ports 8080", since=0.0, until=1.0
    )
    return enforced.verdict, promised.verdict


def test_the_matrix_passes_when_enforced_as_the_policies_and_the_spec_say() -> None:
    enforced, promised = _judge([
        _pair(8080, allowed=True, promised=True, seen="connected"),
        _pair(9, allowed=False, promised=False, seen="refused"),
        _pair(10, allowed=False, promised=False, seen="timed out"),
    ])  # fmt: skip
    assert enforced.status == "pass" and promised.status == "pass"


def test_a_cluster_that_does_not_enforce_fails_the_enforcement_check_with_the_pair() -> None:
    enforced, promised = _judge([
        _pair(8080, allowed=True, promised=True, seen="connected"),
        _pair(9, allowed=False, promised=False, seen="connected"),
    ])  # fmt: skip
    assert enforced.status == "fail" and "demo-1:9: connected" in enforced.note
    assert "is NetworkPolicy enforced here?" in enforced.note
    assert promised.status == "fail" and "does not promise it" in promised.note


def test_a_policy_too_open_or_too_closed_fails_the_promise_check_only() -> None:
    enforced, promised = _judge([
        _pair(8080, allowed=False, promised=True, seen="timed out"),
        _pair(9, allowed=True, promised=False, seen="connected", namespace="other"),
    ])  # fmt: skip
    assert enforced.status == "pass"
    assert promised.status == "fail" and promised.measured == 2
    assert "demo-1:8080: timed out, but the spec promises it (rule x)" in promised.note
    assert (
        "a pod of other -> demo-1:9: connected, but the spec does not promise it" in promised.note
    )


def test_nothing_to_enforce_or_nothing_seen_is_inconclusive() -> None:
    enforced, _ = _judge([_pair(8080, allowed=True, promised=True, seen="connected")])
    assert enforced.status == "inconclusive"
    enforced, promised = _judge([_pair(9, allowed=False, promised=False, seen="")])
    assert enforced.status == "inconclusive" and promised.status == "inconclusive"
    enforced, promised = _judge([_pair(9, allowed=False, promised=False, seen="error: odd")])
    assert enforced.status == "fail" and "which tells neither way" in enforced.note


def test_the_spec_promises_ports_from_namespaces(tmp_path: Path) -> None:
    expect = NetworkPolicyExpectation(ingress_ports=(8080,), ingress_from="same-namespace")
    assert expect.admits(same_namespace=True, port=8080)
    assert not expect.admits(same_namespace=False, port=8080)
    assert not expect.admits(same_namespace=True, port=9)
    text = (SCENARIOS / "demo-service.spec.yaml").read_text()
    bad = text.replace("ingress_ports: [8080]", "ingress_ports: [0]").replace(
        "ingress_from: any-namespace", "ingress_from: everyone"
    )
    path = tmp_path / "bad.spec.yaml"
    path.write_text(bad.replace("../manifests/", f"{ROOT / 'manifests'}/"))
    with pytest.raises(InvalidSpec) as caught:
        load_spec(path)
    assert "network_policy.ingress_ports" in str(caught.value)
    assert "'everyone' is not a source of connections" in str(caught.value)


def open_policy_variant(directory: Path) -> Path:
    """The demo service alone, its NetworkPolicy admitting every port (overlays/open-policy)."""
    text = (SCENARIOS / "demo-service.spec.yaml").read_text()
    demo = text.split("  - name: demo-blue-green", 1)[0]
    variant = directory / "open-policy.spec.yaml"
    variant.write_text(
        demo.replace(
            "../manifests/overlays/ci", f"{ROOT / 'manifests' / 'overlays' / 'open-policy'}"
        )
    )
    return variant


@pytest.mark.e2e
def test_a_policy_that_admits_every_port_fails_naming_the_port_reached(
    pytester, monkeypatch, cluster, test_report_dir
) -> None:
    """The demo's NetworkPolicy with its ports removed admits every port: the promise check
    fails naming the port the service does not use that the probes reached, and the rule
    that let them through; the enforcement check is inconclusive (nothing is dropped)."""
    found = run_example(pytester, monkeypatch, cluster, test_report_dir,
                        open_policy_variant(pytester.path), "test_network_policy.py")  # fmt: skip
    outcome, message = found["test_network_policies_let_through_exactly_what_the_spec_promises"]
    assert outcome == "failed", message[:3000]
    # A policy that drops nothing leaves the enforcement nothing to judge.
    assert "the service's NetworkPolicies drop none of the probed connections" in message
    assert "FAILED connections to" in message, message[:3000]
    assert f":{UNUSED_PORT}: connected, but the spec does not promise it" in message, message[:3000]
    assert "NetworkPolicy demo ingress[0] admits it" in message, message[:3000]


def test_the_demo_policy_is_what_the_spec_promises() -> None:
    policy = yaml.safe_load((ROOT / "manifests" / "base" / "networkpolicy.yaml").read_text())
    spec = load_spec(SCENARIOS / "demo-service.spec.yaml").service("demo").network_policy
    ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert spec is not None and tuple(ports) == spec.ingress_ports


def test_a_spec_that_promises_policies_the_manifests_lack_is_refused() -> None:
    service = load_spec(SCENARIOS / "demo-service.spec.yaml").service("demo")
    objects = render(service.manifests)
    assert spec_problems(service, objects) == []
    without = [o for o in objects if o["kind"] != "NetworkPolicy"]
    (problem,) = spec_problems(service, without)
    assert "no NetworkPolicy of the manifests selects Deployment demo's pods for ingress" in problem


def test_a_policy_with_an_empty_egress_list_and_no_types_is_about_ingress_only() -> None:
    policy = {
        "metadata": {"name": "in-only", "namespace": "shop"},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": []},
    }
    assert admits([policy], Peer("shop"), Peer("elsewhere"), port=80).allowed


def test_ip_blocks_match_the_probes_address_and_the_name_label_is_the_namespaces() -> None:
    allow_all = {
        "metadata": {"name": "cidr", "namespace": "shop"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]},
    }
    assert admits([allow_all], Peer("x", ip="10.244.1.7"), TARGET, port=1).allowed
    pinned = Peer("shop-peer2", namespace_labels={"kubernetes.io/metadata.name": "ingress"})
    assert pinned.namespace_labels["kubernetes.io/metadata.name"] == "shop-peer2"


def test_an_unknown_selector_operator_is_refused() -> None:
    with pytest.raises(ValueError, match="'Gt' is not one the API knows"):
        selects({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}, {})


def test_the_probe_tells_accepted_refused_timed_out_and_odd_apart(tmp_path: Path) -> None:
    nc = """case "$4" in
  1) exit 0 ;;
  2) echo "nc: can't connect to remote host (10.0.0.5): Connection refused"; exit 1 ;;
  3) echo "nc: timed out"; exit 1 ;;
  *) echo "nc: bad address"; exit 1 ;;
esac"""
    out, calls = run_script(
        PROBE_SCRIPT,
        tmp_path,
        stubs={"nc": nc, "sleep": "", "timeout": 'shift; exec "$@"',
               "nslookup": "echo Address: 10.96.0.10"},
        env={"TARGET": "10.0.0.5", "PORTS": "1 2 3 4", "DNS_NAME": "demo.ns1.svc"},
    )  # fmt: skip
    assert read_probe_log("\n".join(out)) == {
        ("TCP", 1): "connected", ("TCP", 2): "refused", ("TCP", 3): "timed out",
        ("TCP", 4): "error: nc: bad address", ("DNS", 53): "resolved",
    }  # fmt: skip
    assert "nslookup demo.ns1.svc.cluster.local" in calls
