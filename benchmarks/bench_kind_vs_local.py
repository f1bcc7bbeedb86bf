"""Single-node kind (offline node image) against the local provider: create to "demo serving".

Measured, per run and provider, from `create()` until the node is Ready, CoreDNS and
metrics-server are available, the demo service's images are loaded and it answers through its
NodePort on 127.0.0.1 (what every scenario waits for before it starts). Both providers are
warm: binaries, images and the kind node image are cached. The providers alternate, one
cluster at a time (they publish the same NodePorts), and each cluster is deleted after its run.

Usage: python benchmarks/bench_kind_vs_local.py [--runs 3]
Needs `harness kind prepare` first on machines like this one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cluster import make_provider
from harness.cluster.provider import ClusterOptions
from harness.kube import Kube
from harness.namespaces import create_namespace
from harness.scenario import deploy_service, provide_images
from harness.spec import load_spec

SPEC = Path(__file__).resolve().parents[1] / "scenarios" / "demo-service.spec.yaml"
PROVIDERS = ("kind", "local")


def create_to_serving(provider_name: str, name: str) -> float:
    """Seconds from create() to the demo service answering on 127.0.0.1; then delete."""
    spec = load_spec(SPEC)
    provider = make_provider(provider_name, ClusterOptions(name=name))
    started = time.monotonic()
    try:
        provider.create()
        provider.wait_ready(timeout=600)
        provide_images(provider, spec)
        kube = Kube(provider.kubeconfig())
        try:
            create_namespace(kube, "bench", run_id="bench", test="bench")
            deployed = deploy_service(provider, kube, "bench", spec.services[0])
        finally:
            kube.close()
        took = time.monotonic() - started
        print(f"  {provider_name}: {took:.1f} s ({deployed.base_url} serving)", flush=True)
        return took
    finally:
        provider.delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    for run in range(1, args.runs + 1):
        print(f"run {run}/{args.runs}", flush=True)
        for provider_name in PROVIDERS:
            seconds[provider_name].append(create_to_serving(provider_name, "kh-bench"))
    print("\ncreate to demo serving (single node, warm caches):")
    for provider_name, values in seconds.items():
        spread = f"min {min(values):.1f} s, max {max(values):.1f} s"
        print(
            f"  {provider_name:<5} median {statistics.median(values):.1f} s "
            f"over {len(values)} runs ({spread})"
        )


if __name__ == "__main__":
    main()
