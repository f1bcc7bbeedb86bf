"""NetworkPolicies, proven from probe pods on a cluster that enforces them (the harness
installs kube-router's firewall on local and kind when a service promises `network_policy`).

Probe pods in the service's namespace, in another namespace, and carrying the labels each
policy's `from` names try every port worth trying of one of the service's pods (those
promised, those the policies and containers name, and one it does not use, which a listener
of the harness's takes with the others it leaves); those of its namespace also look its
Service's name up in DNS. Each pair is judged twice: against what
the service's policies admit (is the cluster enforcing them?) and against what the spec
promises (are the policies right?). A policy too open or too closed fails naming the pair
and the rule that decided it.
"""

import time
from dataclasses import asdict
from urllib.parse import urlsplit

import pytest

from harness.assertions import Evidence, connectivity_as_promised, connectivity_enforced
from harness.images.builders import busybox_image
from harness.network_policy import connectivity_matrix
from harness.scenario import judge, load_once

pytestmark = pytest.mark.promises("network_policy")


def test_network_policies_let_through_exactly_what_the_spec_promises(
    request, cluster, kube_api, deployed, service_spec, harness_run, timeline, test_report_dir
):
    expect = service_spec.network_policy
    archive, image = busybox_image()
    load_once(cluster, [archive])
    pod = deployed.pods()[0]
    started = timeline.mark("connectivity probes", pod=pod).t
    pairs, target = connectivity_matrix(
        kube_api,
        deployed.objects,
        namespace=deployed.namespace,
        pod=pod,
        promised=expect,
        dns_name=urlsplit(deployed.service_url).hostname or "",
        run_id=harness_run.run_id,
        test=request.node.nodeid,
        image=image,
    )
    ended = time.time()
    promise = f"ports {', '.join(map(str, expect.ingress_ports))} from {expect.ingress_from}"
    shown = f"{pod} ({target.ip})"
    evidence = Evidence("network policy", timeline.timeline())
    evidence.measurements["connectivity"] = [
        {**asdict(pair), "reached": pair.reached} for pair in pairs
    ]
    evidence.add(
        connectivity_enforced(pairs, target=shown, since=started, until=ended),
        connectivity_as_promised(pairs, target=shown, promise=promise, since=started, until=ended),
    )
    judge(evidence, test_report_dir)
