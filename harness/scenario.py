"""What the scenario fixtures need: the spec, the service's images, and judging the evidence."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from harness.access import LoadEntry
from harness.argo_rollouts import provide_argo_rollouts
from harness.assertions import Check, Evidence
from harness.chaos import Target, cpu_hog, crash_process, fail_probe, injected
from harness.chaos.slow_start import SlowStarter, slow_starts
from harness.cluster.provider import ClusterProvider
from harness.deploy import Deployed, deploy, deployment_and_pods, rollout_verdict
from harness.errors import InvalidConfiguration, WaitTimeout
from harness.image_availability import runtime_images
from harness.images.cache import archive_file
from harness.images.load import build_load_image
from harness.images.oci import split_ref
from harness.kube import Kube, container_port
from harness.kubectl import kubectl_path, post_to_pod
from harness.load import Constant, Load, LoadRun
from harness.load.cluster import ClusterSite
from harness.load.runner import HOST
from harness.locks import file_lock
from harness.network_policy import provide_network_policies
from harness.paths import cache_dir, lock_file
from harness.progress import say, step
from harness.render import render
from harness.spec import GoProgramBuild, InvalidSpec, ResilienceSpec, ServiceSpec, load_spec
from harness.suite import DEMO_SPEC, PATHS_LOCUSTFILE
from harness.wait import Pending, wait_for
from harness.workload import Workload, spec_problems

DEFAULT_SPEC = Path("scenarios") / "demo-service.spec.yaml"


def spec_path(option: str | None, rootdir: Path) -> Path:
    """`--resilience-spec`, else the demo service's spec in the project, else the one
    shipped with kube-harness."""
    if option:
        return Path(option)
    own = rootdir / DEFAULT_SPEC
    return own if own.is_file() else DEMO_SPEC


def read_spec(option: str | None, rootdir: Path) -> ResilienceSpec:
    """The resilience spec, checked against each service's rendered manifests too.

    Raises:
        InvalidSpec: the file's own problems, or what the manifests contradict (a Deployment,
            container or HPA the spec names and the manifests lack, other HPA bounds).
    """
    path = spec_path(option, rootdir)
    spec = load_spec(path)
    problems = [
        f"services[{index}].{problem}"
        for index, service in enumerate(spec.services)
        for problem in spec_problems(
            service, render(service.manifests, kubectl=kubectl_path(), release=service.helm)
        )
    ]
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InvalidSpec(
            f"resilience spec {path} does not match the service's manifests:\n{listing}",
            fix="correct the spec (or the manifests) so that both name the same objects",
        )
    return spec


def build_service_images(service: ServiceSpec) -> list[Path]:
    """Image archives for `service`: those it lists (`archives:`), then those the harness
    builds for it (`build:`), in spec order."""
    archives = [archive_file(path) for path in service.archives]
    if service.build == "demo":
        from harness.images.demo import build_demo_images

        versions = [split_ref(ref)[1] for ref in service.images.values()]
        archives += build_demo_images(versions)
    elif isinstance(service.build, GoProgramBuild):
        from harness.images.builders import go_program_image

        build = service.build
        archives += [go_program_image(ref, build) for ref in dict.fromkeys(service.images.values())]
    return archives


def provide_images(cluster: ClusterProvider, spec: ResilienceSpec) -> list[Path]:
    """Build every service's images and load them into the cluster, once per cluster (and
    once for services that share them)."""
    archives = list(dict.fromkeys(a for s in spec.services for a in build_service_images(s)))
    load_once(cluster, archives)
    return archives


def provide_load_image(cluster: ClusterProvider) -> str:
    """Build the load image (Locust and the harness's recorder) and load it into the cluster,
    once per cluster; its reference."""
    with file_lock(lock_file("load-image.lock")):
        ref, archive = build_load_image()
    load_once(cluster, [archive])
    return ref


def cluster_site(cluster: ClusterProvider, kube: Kube, namespace: str) -> Callable[[], ClusterSite]:
    """What a `Load` needs to run load from the cluster, made on first use (the image build)."""
    return lambda: ClusterSite(kube, namespace, provide_load_image(cluster))


def load_once(cluster: ClusterProvider, archives: Sequence[Path]) -> None:
    """Load image archives into the cluster, skipping those it already holds.

    Parallel workers take a lock so that one loads while the others wait. What was loaded
    is noted per cluster (keyed by its kubeconfig, which a re-created cluster changes, and
    by the archives' content-addressed names), so a cluster kept with --keep-cluster is not
    loaded again by the next run.
    """
    name = cluster.options.name
    record = cache_dir() / "images-loaded" / f"{name}.json"
    with file_lock(lock_file(f"images-{name}.lock")):
        identity = hashlib.sha256(cluster.kubeconfig().read_bytes()).hexdigest()
        try:
            noted = json.loads(record.read_text())
        except (OSError, ValueError):
            noted = {}
        loaded = set(noted.get("archives", [])) if noted.get("cluster") == identity else set()
        for archive in archives:
            if archive.name in loaded:
                say(f"{archive.name} is already in cluster {name}: not loaded again")
            else:
                cluster.load_image(archive)
                loaded.add(archive.name)
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps({"cluster": identity, "archives": sorted(loaded)}))


def deploy_service(
    cluster: ClusterProvider,
    kube: Kube,
    namespace: str,
    service: ServiceSpec,
    *,
    load_placement: str = HOST,
) -> Deployed:
    """The spec's service (its current images) deployed into `namespace` and rolled out;
    an image on no node and not pullable is named first, here and before each rollout.

    An Argo Rollouts release (`rollout.controller`) gets the controller installed first, and
    a service that promises what its NetworkPolicies let through (`network_policy`) a
    cluster that enforces them (harness.network_policy).
    Its NodePorts are waited for on 127.0.0.1 where the provider publishes them there, or
    where the load comes from the host (`load_placement`); load from the cluster on an
    `existing` cluster needs no NodePort here.
    """
    if service.rollout is not None and service.rollout.controller == "argo-rollouts":
        provide_argo_rollouts(cluster, kube)
    if service.network_policy is not None:
        provide_network_policies(cluster, kube)
    return deploy(
        kube,
        namespace,
        service.manifests,
        images=service.image_override("current"),
        kubectl=kubectl_path(),
        entry=LoadEntry(service.deployment, service.port),
        release=service.helm,
        held_images=lambda: runtime_images(cluster),
        wait_node_ports=cluster.capabilities.nodeports_on_localhost or load_placement == HOST,
    )


def workload_of(deployed: Deployed, service: ServiceSpec) -> Workload:
    """What the deployed manifests say about the service's Deployment (for findings)."""
    workload = Workload.of(deployed.objects, service.deployment)
    if workload is None:  # read_spec checked the manifests: only a changed file gets here
        raise InvalidConfiguration(
            f"{deployed.source} has no Deployment {service.deployment}",
            fix="set the spec's `deployment:` to one the manifests hold",
        )
    return workload


def judge(evidence: Evidence, report_dir: Path) -> None:
    """Write the scenario's result.json, then fail with the explanation of any broken promise."""
    evidence.write(report_dir)
    evidence.assert_all()


def steady_load(
    load: Load,
    service: ServiceSpec,
    deployed: Deployed,
    *,
    seconds: float,
    cpu: bool = False,
    avoid_nodes: Sequence[str] = (),
    new_connections: bool = False,
) -> LoadRun:
    """Start the spec's steady load (or, with `cpu`, the load that drives the HPA), from
    where the spec (or --load-placement) puts it; from the cluster, off `avoid_nodes`;
    with `new_connections`, each request on a connection of its own.

    The run lasts at most `seconds`; leaving its `with` block earlier ends it gracefully.
    """
    users = service.load.cpu_users if cpu else service.load.users
    path = service.load.cpu_path if cpu else service.load.path
    placement = load.placement_for(service.load.placement)
    return load.run(
        deployed.load_url(placement),
        Constant(users=users, seconds=seconds),
        locustfile=PATHS_LOCUSTFILE,
        env={
            "LOAD_PATH": path,
            "LOAD_USER_RPS": f"{service.load.rps:g}",
            "LOAD_TIMEOUT_S": f"{service.load.timeout_s:g}",
            "LOAD_NEW_CONNECTIONS": "1" if new_connections else "0",
        },
        workers=service.load.workers,
        placement=placement,
        avoid_nodes=avoid_nodes,
        version_from=service.load.version_from,
    )


def wait_for_check(make_check: Callable[[], Check], *, timeout: float, what: str) -> Check:
    """Re-evaluate a check until it passes or `timeout` passes; return its last verdict.

    The wait never raises on a failing check: the scenario judges it with the others, so
    the report shows every promise, kept or not.
    """
    last: list[Check] = []

    def passed() -> Check | Pending:
        last[:] = [make_check()]
        return last[0] if last[0].passed else Pending(str(last[0].verdict))

    try:
        return wait_for(passed, what=what, timeout=timeout, interval=1)
    except WaitTimeout:
        return last[0]


def admin_call(kube: Kube, deployed: Deployed, service: ServiceSpec, pod: str, path: str) -> int:
    """POST an admin action of the spec to one pod (through a port-forward); its HTTP status."""
    if service.admin is None:
        raise InvalidConfiguration(
            f"{service.name}: the spec names no admin hooks",
            fix="add an `admin:` section to the service in the spec",
        )
    token = deployed.secret_value(service.admin.token_secret, service.admin.token_key)
    port = container_port(kube, deployed.namespace, pod, service.container)
    return post_to_pod(kube.kubeconfig, deployed.namespace, pod, port, path, token=token)


@contextmanager
def probe_failing(
    cluster: ClusterProvider,
    kube: Kube,
    deployed: Deployed,
    service: ServiceSpec,
    pod: str,
    probe: str,
) -> Iterator[str]:
    """Make `pod`'s `probe` ("readiness" or "liveness") fail for the block; yields how.

    Through the service's own admin hook when the spec names one (the service then decides
    when it is healthy again), else from outside, without the service's help
    (harness.chaos.fail_probe), reverted when the block ends.

    Raises:
        ProbeNotFailable: no admin hook, and the probe cannot be failed from outside.
    """
    hook = getattr(service.admin, f"fail_{probe}", None) if service.admin else None
    if hook:
        admin_call(kube, deployed, service, pod, hook)
        yield f"the service's admin hook {hook}"
        return
    t = Target.of(cluster, kube, deployed.namespace)
    with injected(t, fail_probe, pod, service.container, probe) as fault:
        yield f"the harness dropping the {fault.undo['what']}"


@contextmanager
def cpu_pressure(
    cluster: ClusterProvider,
    kube: Kube,
    deployed: Deployed,
    service: ServiceSpec,
    *,
    seconds: float,
) -> Iterator[list[str]]:
    """Burn one core in the container of each of the service's Ready pods for the block (at
    most `seconds`); yields the pods. Pods started meanwhile (the HPA's) run unburdened."""
    t = Target.of(cluster, kube, deployed.namespace)
    with ExitStack() as burning:
        pods = deployed.pods()
        for pod in pods:
            burning.enter_context(injected(t, cpu_hog, pod, service.container, seconds=seconds))
        yield pods


def crash(
    cluster: ClusterProvider, kube: Kube, deployed: Deployed, service: ServiceSpec, pod: str
) -> None:
    """Crash `pod`'s main process: the service's admin hook, else SIGKILL from the node."""
    if service.admin is not None:
        admin_call(kube, deployed, service, pod, service.admin.crash)
    else:
        crash_process(Target.of(cluster, kube, deployed.namespace), pod, service.container)


def slowed_start(
    cluster: ClusterProvider,
    kube: Kube,
    deployed: Deployed,
    service: ServiceSpec,
    *,
    delay_s: float,
    timeout: float,
) -> list[SlowStarter]:
    """Roll the service out again with every new pod's start-up slowed by `delay_s`, without
    the service's help (harness.chaos.slow_start); returns once rolled out.

    Raises:
        ProbeNotFailable: its probes cannot be failed from outside (nothing changed).
        WaitTimeout: the rollout did not complete within `timeout`.
    """
    from harness.images.builders import busybox_image

    archive, gate_image = busybox_image()
    load_once(cluster, [archive])
    namespace, deployment = deployed.namespace, service.deployment

    def rolled_out() -> bool:
        live, pods = deployment_and_pods(kube, namespace, deployment)
        return rollout_verdict(live, pods, [], old_pods_gone=True).complete

    with step(f"rolling out {deployment} with start-ups slowed by {delay_s:g}s"):
        return slow_starts(
            Target.of(cluster, kube, namespace),
            deployment,
            service.container,
            delay_s=delay_s,
            gate_image=gate_image,
            rolled_out=rolled_out,
            timeout=timeout,
        )


def max_unavailable(kube: Kube, namespace: str, deployment: str) -> tuple[int, int]:
    """A Deployment's replicas and how many of them its rolling update may take down."""
    spec = kube.apps.read_namespaced_deployment(deployment, namespace).spec
    rolling = spec.strategy.rolling_update if spec.strategy else None
    raw = rolling.max_unavailable if rolling and rolling.max_unavailable is not None else "25%"
    replicas = spec.replicas or 1
    if isinstance(raw, str) and raw.endswith("%"):
        return replicas, int(replicas * int(raw[:-1]) / 100)  # Kubernetes rounds this down
    return replicas, int(raw)
