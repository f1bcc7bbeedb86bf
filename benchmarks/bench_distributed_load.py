"""Load from the cluster: requests/s with 1, 2 and 4 Locust workers in pods, beside the host.

The target has spare capacity: a small asyncio HTTP server (bench_load.py's) in a pod of the
load image, behind a NodePort Service. Against it, one after the other in the same run:
plain `locust --headless` on the host (through the NodePort on 127.0.0.1; its CPU from rusage),
the harness's host runner, one Locust pod, and Locust's distributed mode in the cluster with 1,
2 and 4 workers (each worker's CPU from its own samples). Every run uses the same users, with
no pause per user.

On a two-core machine the workers, the target and the cluster share the cores, so what this
measures is the coordination cost, not scaling:
- N workers' total / one worker's total (goal >= 0.9 for N=2);
- a worker's requests per CPU-second against plain Locust's (goal >= 0.9), with one worker
  (like plain Locust, one process with the cores to share with the target only); with 2 and
  4 workers it is printed too.

    python benchmarks/bench_distributed_load.py [--seconds 20] [--users 20]

Needs a running cluster (`harness cluster up`); builds and loads the load image if needed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_load import plain_run  # noqa: E402
from kubernetes import client  # noqa: E402

from harness.cluster import active as active_cluster  # noqa: E402
from harness.cluster import make_provider  # noqa: E402
from harness.cluster.provider import ClusterOptions  # noqa: E402
from harness.kube import Kube  # noqa: E402
from harness.load import Constant, LoadResult, LoadRunner  # noqa: E402
from harness.load.cluster import ClusterSite  # noqa: E402
from harness.namespaces import create_namespace, delete_namespace, namespace_name  # noqa: E402
from harness.run import new_run_id  # noqa: E402
from harness.scenario import provide_load_image  # noqa: E402
from harness.wait import Pending, wait_for  # noqa: E402

SERVER_PORT = 8080
SERVER = (REPO / "benchmarks" / "bench_load.py").read_text()
NO_PAUSE = {"DEMO_USER_RPS": "0"}  # as many requests as Locust can send


def deploy_target(kube: Kube, namespace: str, image: str) -> int:
    """The asyncio server as a pod and a NodePort Service; the NodePort it got."""
    labels = {"app": "bench-target"}
    kube.core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="bench-target"), data={"bench_load.py": SERVER}
        ),
    )
    kube.core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="bench-target", labels=labels),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="server",
                        image=image,
                        image_pull_policy="Never",
                        command=[
                            "python3",
                            "/bench/bench_load.py",
                            "--serve",
                            str(SERVER_PORT),
                            "--serve-host",
                            "0.0.0.0",
                        ],
                        volume_mounts=[client.V1VolumeMount(name="bench", mount_path="/bench")],
                        readiness_probe=client.V1Probe(
                            tcp_socket=client.V1TCPSocketAction(port=SERVER_PORT), period_seconds=1
                        ),
                    )
                ],
                volumes=[
                    client.V1Volume(
                        name="bench",
                        config_map=client.V1ConfigMapVolumeSource(name="bench-target"),
                    )
                ],
            ),
        ),
    )
    service = kube.core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="bench-target"),
            spec=client.V1ServiceSpec(
                type="NodePort",
                selector=labels,
                ports=[client.V1ServicePort(port=80, target_port=SERVER_PORT)],
            ),
        ),
    )

    def ready() -> bool | Pending:
        pod = kube.core.read_namespaced_pod("bench-target", namespace)
        ok = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        return True if ok else Pending(pod.status.phase)

    wait_for(ready, what="the benchmark target pod", timeout=120)
    return service.spec.ports[0].node_port


def measure(runner: LoadRunner) -> LoadResult:
    with runner.start() as run:
        return run.result()


def per_core(requests: int, cpu_seconds: float) -> float:
    return requests / cpu_seconds if cpu_seconds else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    recorded = active_cluster.read()
    if recorded is None:
        raise SystemExit("no cluster is up: run `harness cluster up` first")
    provider = make_provider(recorded.provider, ClusterOptions(name=recorded.name))
    kube = Kube(provider.kubeconfig())
    image = provide_load_image(provider)
    namespace = namespace_name(new_run_id())
    create_namespace(kube, namespace, run_id="bench", test="bench_distributed_load")
    shape = Constant(users=args.users, seconds=args.seconds, spawn_rate=args.users)
    rows: list[tuple[str, float, str]] = []
    try:
        node_port = deploy_target(kube, namespace, image)
        host_url = f"http://127.0.0.1:{node_port}"
        cluster_url = f"http://bench-target.{namespace}.svc:80"
        with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
            folder = Path(tmp)
            plain = plain_run(
                host_url, args.users, args.seconds, folder, {**os.environ, **NO_PAUSE}
            )
            plain_rate = per_core(plain["requests"], plain["cpu"])
            rows.append(("plain locust, host", plain["requests"] / args.seconds, ""))
            host = measure(
                LoadRunner(base_url=host_url, shape=shape, report_dir=folder / "host", env=NO_PAUSE)
            )
            rows.append(("harness, host, 1 process", host.rps, host.generator.describe()))
            totals: dict[int, float] = {}
            worker_rates: dict[int, float] = {}  # N workers -> their median req/CPU-s
            for workers in (0, 1, 2, 4):
                result = measure(
                    LoadRunner(
                        base_url=cluster_url,
                        shape=shape,
                        report_dir=folder / f"cluster-{workers}",
                        env=NO_PAUSE,
                        workers=workers,
                        placement="cluster",
                        site=ClusterSite(kube, namespace, image),
                    )
                )
                totals[workers] = result.rps
                rates = sorted(
                    per_core(w.requests, w.cpu_seconds) for w in result.generator.workers
                )
                worker_rates[workers] = rates[len(rates) // 2]
                what = f"{workers} worker(s)" if workers else "one pod"
                rows.append(
                    (f"harness, cluster, {what}", result.rps,
                     result.generator.describe() + ("" if result.reliable else "  SATURATED"))
                )  # fmt: skip
    finally:
        delete_namespace(kube, namespace)
    for name, rps, detail in rows:
        print(f"{name:32} {rps:8.0f} req/s   {detail}")
    coordination = totals[2] / totals[1] if totals[1] else 0.0
    print(f"coordination cost: 2 workers / 1 worker = {coordination:.2f} (goal >= 0.9)")
    print(f"coordination cost: 4 workers / 1 worker = {totals[4] / totals[1]:.2f}")
    # A worker's rate against plain Locust's, which had a core of its own: one worker is the
    # like-for-like figure (goal >= 0.9); with 2 and 4 the workers share the two cores with
    # each other and the target, and each sends fewer requests per wakeup.
    print(f"per-core rate: plain Locust {plain_rate:.0f} req/CPU-s")
    for workers, rate in worker_rates.items():
        what = f"{workers} worker(s), median" if workers else "one Locust pod (no master)"
        goal = " (goal >= 0.9)" if workers == 1 else ""
        ratio = rate / plain_rate if plain_rate else 0.0
        print(f"per-core rate: {what} {rate:.0f} req/CPU-s, ratio {ratio:.2f}{goal}")
    print(
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
