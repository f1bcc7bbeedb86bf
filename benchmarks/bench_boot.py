"""Warm boot and teardown of the local cluster: median and spread over N runs.

Warm boot = binaries and images already cached; measured from `create()` until the node is
Ready, CoreDNS and metrics-server are available and a test pod serves through a NodePort
Service on 127.0.0.1. Teardown = `delete()` until nothing of the cluster is left.

Usage: python benchmarks/bench_boot.py [--runs 5] [--name bench] [--metric-resolution 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubernetes import client

from harness.cluster.local import LocalProvider
from harness.cluster.provider import ClusterOptions, Timings
from harness.images.builders import busybox_image
from harness.kube import Kube
from harness.wait import wait_for


def serve_test_pod(provider: LocalProvider, ref: str) -> None:
    """Run one busybox httpd pod behind a NodePort Service and wait until it answers."""
    kube = Kube(provider.kubeconfig())
    labels = {"app": "bench"}
    container = client.V1Container(
        name="httpd",
        image=ref,
        image_pull_policy="Never",
        command=["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && "
                 "exec httpd -f -p 8080 -h /www"],
    )  # fmt: skip
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="bench", labels=labels),
        spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=1),
    )
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="bench"),
        spec=client.V1ServiceSpec(
            type="NodePort",
            selector=labels,
            ports=[client.V1ServicePort(port=80, target_port=8080)],
        ),
    )
    try:
        kube.core.create_namespaced_pod("default", pod)
        created = kube.core.create_namespaced_service("default", service)
        node_port = created.spec.ports[0].node_port

        def answer() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{node_port}/", timeout=2) as r:
                return r.read().decode()

        wait_for(answer, what="the test pod through its Service", timeout=120, interval=0.2,
                 transient=(OSError,))  # fmt: skip
    finally:
        kube.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--name", default="bench")
    parser.add_argument(
        "--metric-resolution",
        type=int,
        default=Timings().metric_resolution_s,
        help="metrics-server resolution in seconds (it is Available one resolution after start)",
    )
    args = parser.parse_args()
    timings = Timings(metric_resolution_s=args.metric_resolution)
    provider = LocalProvider(ClusterOptions(name=args.name, timings=timings))
    archive, ref = busybox_image()
    provider.binaries()
    provider.delete()
    # One cold run fills the caches (images); it is not counted.
    provider.create()
    provider.delete()
    boots, teardowns = [], []
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        provider.create()
        provider.wait_ready()
        provider.load_image(archive)
        serve_test_pod(provider, ref)
        boots.append(time.monotonic() - started)
        started = time.monotonic()
        provider.delete()
        teardowns.append(time.monotonic() - started)
        print(f"run {run}: boot {boots[-1]:.1f}s, teardown {teardowns[-1]:.1f}s", flush=True)
    for what, values in (("warm boot", boots), ("teardown", teardowns)):
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(
            f"{what}: median {statistics.median(values):.1f}s, min {min(values):.1f}s, "
            f"max {max(values):.1f}s, stdev {spread:.1f}s over {len(values)} runs"
        )


if __name__ == "__main__":
    main()
