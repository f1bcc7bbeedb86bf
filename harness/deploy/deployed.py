"""`deploy()`: a service's manifests rendered, checked, applied and rolled out in a test
namespace; `Deployed`, what it returns, updates and tears them down."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from harness.access import LoadEntry, Reach, reach
from harness.argo_rollouts import ROLLOUT_HASH_LABEL, ArgoRollout, rollouts_of
from harness.cluster.provider import DEFAULT_NODE_PORTS
from harness.deploy.apply import Applier, apply_all
from harness.deploy.node_ports import (
    NodePortPool,
    NodePortRotation,
    is_node_port_service,
    node_ports_in_use,
    wait_node_ports_answer,
)
from harness.deploy.rollout import (
    DEFAULT_ROLLOUT_TIMEOUT,
    deployment_and_pods,
    pod_verdict,
    wait_rolled_out,
)
from harness.errors import CommandFailed, InvalidConfiguration
from harness.helm import Helm, HelmRelease, PostRender, is_chart
from harness.image_availability import check_images_available
from harness.kube import Kube, secret_value
from harness.load.runner import CLUSTER
from harness.progress import step
from harness.render import Object, chart_release_name, own_by_namespace, render

DEFAULT_TEARDOWN_TIMEOUT = 120.0


@dataclass(frozen=True)
class _Update:
    """What an update applies: the objects, the release (for a chart), what shapes them."""

    objects: list[Object]
    release: HelmRelease | None
    config: PostRender


@dataclass
class Deployed:
    """A service's manifests deployed into a namespace; `teardown()` removes them again.

    Attributes:
        namespace: where it runs.
        base_url: http://127.0.0.1:<nodePort> of its first NodePort Service; it answers
            when deploy() returns, though kube-proxy may add the last Ready pods to its
            rules a moment later.
        node_ports: NodePort Service name -> the NodePort it got.
        service_url: http://<service>.<namespace>.svc:<port> of the same Service, for
            clients inside the cluster (load from the cluster).
        objects: the objects as applied.
        release: for a Helm chart, the release as installed (Helm applies, the harness
            shapes what it applies through a post-renderer).
    """

    kube: Kube
    namespace: str
    source: Path
    objects: list[Object]
    base_url: str
    node_ports: dict[str, int]
    applier: Applier
    service_url: str = ""
    kubectl: str | Path = "kubectl"
    own_service: Object | None = None  # the harness's NodePort Service, when it added one
    release: HelmRelease | None = None
    previous: _Update | None = None  # what ran before the last update()
    held_images: Callable[[], set[str] | None] | None = None  # see deploy()
    namespace_uid: str = ""  # owner of the service's cluster-scoped objects (harness.render)

    @property
    def deployments(self) -> list[str]:
        return [o["metadata"]["name"] for o in self.objects if o["kind"] == "Deployment"]

    @property
    def rollouts(self) -> list[str]:
        """Its Argo Rollouts (see harness.argo_rollouts)."""
        return [o["metadata"]["name"] for o in rollouts_of(self.objects)]

    @property
    def label(self) -> str:
        """What progress lines call it: the Helm release, else the manifests' folder."""
        return f"Helm release {self.release.name}" if self.release else self.source.name

    def load_url(self, placement: str) -> str:
        """Where load sent from `placement` ("host" or "cluster") reaches the service."""
        return self.service_url if placement == CLUSTER else self.base_url

    def pods(self) -> list[str]:
        """Names of the Ready pods of its Deployments."""
        names = []
        for name in self.deployments:
            _, pods = deployment_and_pods(self.kube, self.namespace, name)
            names += [
                p["metadata"]["name"]
                for p in pods
                if not p["metadata"].get("deletionTimestamp") and pod_verdict(p, []).complete
            ]
        return sorted(names)

    def secret_value(self, name: str, key: str) -> str:
        """A value of a Secret as deployed (e.g. the demo's admin token)."""
        return secret_value(self.kube, self.namespace, name, key)

    def _same_ports(self) -> NodePortPool:
        # The Services keep their ports; should one be taken meanwhile, that is an error.
        return NodePortPool(list(self.node_ports.values()), {})

    def _helm(self) -> Helm:
        return Helm(self.kube.kubeconfig, self.kube.context)

    def _post_render(self, images: Mapping[str, str], replicas: Mapping[str, int]) -> PostRender:
        node_ports = {
            o["metadata"]["name"]: [p["nodePort"] for p in o["spec"]["ports"]]
            for o in self.objects
            if is_node_port_service(o)
        }
        return PostRender(
            self.namespace, dict(images), str(self.kubectl), node_ports, replicas,
            self.namespace_uid,
        )  # fmt: skip

    def update(self, images: Mapping[str, str], *, upgrade: bool = False) -> None:
        """Apply the manifests again with other images, and return without waiting.

        NodePorts stay, and each Deployment keeps its current replica count (an HPA may
        have changed it). A chart is upgraded with `helm upgrade`: to the spec's next
        chart and values when `upgrade` is set, else with the same ones.
        """
        self._apply(self._prepare(images, upgrade=upgrade))

    def render_with(self, images: Mapping[str, str]) -> list[Object]:
        """The objects an update to `images` would apply (the same chart and values), as
        rendered for this namespace; nothing is applied."""
        return self._prepare(images, upgrade=False).objects

    def _current_replicas(self) -> dict[str, int]:
        """Each Deployment's replica count now (an HPA may have changed it): what an update
        keeps, since an apply that leaves out `replicas` would reset it to 1."""
        return {
            name: self.kube.apps.read_namespaced_deployment(name, self.namespace).spec.replicas
            for name in self.deployments
        }

    def _prepare(self, images: Mapping[str, str], *, upgrade: bool) -> _Update:
        replicas = self._current_replicas()
        release = self.release.upgraded() if self.release and upgrade else self.release
        config = self._post_render(images, replicas)
        objects = config.shape(
            render(self.source if release is None else release.chart, namespace=self.namespace,
                   images=images, kubectl=self.kubectl, release=release,
                   kube_version=self.kube.server_version if release else None)
        )  # fmt: skip
        if self.own_service is not None:
            objects.append(self.own_service)  # not the release's: Helm leaves it alone
        return _Update(objects, release, config)

    def _apply(self, update: _Update) -> None:
        with step(f"updating {self.label} in {self.namespace}"):
            if update.release is not None:
                self._helm().upgrade(update.release, update.config)
            else:
                self._keep_rollout_selectors(update.objects)
                apply_all(self.applier, update.objects, self._same_ports(), dry_run=False)
            self.previous = _Update(self.objects, self.release, update.config)
            self.objects, self.release = update.objects, update.release

    def _keep_rollout_selectors(self, objects: list[Object]) -> None:
        """Keep the pod-template hash Argo Rollouts put in the selector of the Services it
        points at a version (active, preview, canary): a Service's selector is applied as a
        whole, and one without the hash would send the traffic to every version (a Rollout
        then takes its active Service for a first deploy and cuts over at once)."""
        if not self.rollouts:
            return
        live = {
            s.metadata.name: (s.spec.selector or {}).get(ROLLOUT_HASH_LABEL)
            for s in self.kube.core.list_namespaced_service(self.namespace).items
        }
        for made in objects:
            chosen = live.get(made["metadata"]["name"]) if made["kind"] == "Service" else None
            if chosen:
                made["spec"].setdefault("selector", {})[ROLLOUT_HASH_LABEL] = chosen

    def roll_back(self) -> None:
        """Back to what ran before the last `update()` (`helm rollback` for a chart),
        without waiting."""
        if self.previous is None:
            raise InvalidConfiguration(
                f"{self.label} in {self.namespace} was never updated: nothing to roll back to",
                fix="call update() (or rollout()) first",
            )
        previous = self.previous
        with step(f"rolling back {self.label} in {self.namespace}"):
            if self.release is not None:
                self._helm().rollback(self.release, self.namespace)
            else:
                keep = self._post_render({}, self._current_replicas())
                objects = keep.shape(copy.deepcopy(previous.objects))
                self._keep_rollout_selectors(objects)
                apply_all(self.applier, objects, self._same_ports(), dry_run=False)
            self.previous = _Update(self.objects, self.release, previous.config)
            self.objects, self.release = previous.objects, previous.release

    def rollout(
        self,
        images: Mapping[str, str],
        *,
        timeout: float = DEFAULT_ROLLOUT_TIMEOUT,
        upgrade: bool = True,
    ) -> None:
        """`update()` (to the next chart and values, for a chart) and wait for the rollout.

        Returns once the replaced pods have terminated, so new connections reach only the
        new version.

        Raises:
            InvalidConfiguration: an image is on no node and not pullable (checked when
                deploy() was given `held_images`; nothing changed).
            WaitAborted, WaitTimeout: as for deploy().
        """
        update = self._prepare(images, upgrade=upgrade)
        if self.held_images is not None:
            check_images_available(self.kube, update.objects, held=self.held_images)
        self._apply(update)
        with step(f"rolling out {self.label} in {self.namespace}"):
            wait_rolled_out(
                self.kube, self.namespace, self.deployments, timeout=timeout, old_pods_gone=True
            )

    def teardown(self, *, timeout: float = DEFAULT_TEARDOWN_TIMEOUT) -> None:
        """Delete every object (and the pods) and wait until they are gone."""
        with step(f"removing {self.label} from {self.namespace}"):
            if self.release is not None:
                self._helm().uninstall(self.release, self.namespace)
            self.applier.delete(self.objects, timeout=timeout)


def _find(objects: Sequence[Object], like: Mapping[str, Any]) -> Object:
    return next(
        o
        for o in objects
        if o["kind"] == like["kind"] and o["metadata"]["name"] == like["metadata"]["name"]
    )


def deploy(
    kube: Kube,
    namespace: str,
    kustomization_dir: Path,
    *,
    images: Mapping[str, str] | None = None,
    node_ports: Sequence[int] = DEFAULT_NODE_PORTS,
    timeout: float = DEFAULT_ROLLOUT_TIMEOUT,
    kubectl: str | Path = "kubectl",
    keep_on_failure: bool = False,
    entry: LoadEntry | None = None,
    release: HelmRelease | None = None,
    held_images: Callable[[], set[str] | None] | None = None,
    wait_node_ports: bool = True,
) -> Deployed:
    """Render, check, apply and wait: the kustomization runs in `namespace` when this returns.

    Args:
        kube: the cluster.
        namespace: an existing namespace (the test's).
        kustomization_dir: base or overlay, e.g. manifests/overlays/ci.
        images: image name in the manifests -> the provider's reference for it.
        node_ports: NodePorts answering on 127.0.0.1; each NodePort Service gets a free one.
        timeout: seconds for the rollout.
        kubectl: kubectl binary used to render.
        keep_on_failure: leave the objects in place when the rollout fails (for debugging).
        entry: the Deployment (and port) the load goes to; without a NodePort Service
            selecting it in the manifests, the harness adds one of its own
            (harness.access). Without `entry`, the first NodePort Service of the
            manifests is used.
        release: for a Helm chart, the release's name and values; the chart is then
            installed by `helm install` (shaped by the harness, see harness.helm).
        held_images: how to see the images the nodes hold
            (`lambda: harness.image_availability.runtime_images(cluster)`; returning None
            reads the nodes' status instead). Given, an image that is on no node and not
            pullable is named before anything is created, and before each rollout.
        wait_node_ports: wait until the NodePorts answer on 127.0.0.1. False where
            nothing needs them here (an `existing` cluster with load from the cluster,
            whose NodePorts may be on no address of this machine).

    Returns:
        A handle with the base URL on 127.0.0.1 (answering by then, when waited for), the
        Service's in-cluster URL, the pods and `teardown()`.

    Raises:
        InvalidConfiguration: found before anything is created: the namespace is missing,
            the manifests do not build, a kind is unknown, the API server refuses an
            object, (without `entry`) there is no NodePort Service, or (with
            `held_images`) an image is on no node and its registry is unreachable.
        WaitAborted: a pod is stuck (image pull, crash loop, config error); objects deleted.
        WaitTimeout: the rollout did not finish in time; objects deleted.

    Example:
        >>> demo = deploy(kube, "t-1", Path("manifests/overlays/ci"))  # doctest: +SKIP
        >>> requests.get(demo.base_url + "/version")                   # doctest: +SKIP
        >>> demo.teardown()                                            # doctest: +SKIP
    """
    try:
        namespace_uid = kube.core.read_namespace(namespace, _request_timeout=30).metadata.uid
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise InvalidConfiguration(
            f"namespace {namespace} does not exist", fix="create it first (the test fixture does)"
        ) from None
    source = Path(kustomization_dir)
    if release is None and is_chart(source):
        release = HelmRelease(name=chart_release_name(source), chart=source)
    objects = render(source, namespace=namespace, images=images, kubectl=kubectl, release=release,
                     kube_version=kube.server_version if release else None)  # fmt: skip
    own_by_namespace(objects, namespace, namespace_uid)
    if entry is not None:
        reached = reach(objects, entry)
        if reached.own:
            objects.append(reached.service)
    services = [o for o in objects if is_node_port_service(o)]
    if entry is None:
        if not services:
            raise InvalidConfiguration(
                f"{source} has no NodePort Service, so nothing answers on 127.0.0.1",
                fix="name the Deployment that takes the load (deploy(entry=LoadEntry(...))): "
                "the harness then adds a NodePort Service of its own",
            )
        reached = Reach(services[0], 0, own=False)
    applier = Applier(kube)
    for obj in objects:
        applier.resource(obj)  # unknown kinds fail here, before anything exists
    if held_images is not None:
        check_images_available(kube, objects, held=held_images)
    rotation = NodePortRotation.of(kube)
    pool = NodePortPool(rotation.order(node_ports), node_ports_in_use(kube))
    for service in services:
        pool.assign(service)
    with step(f"deploying {source} into {namespace}"):
        apply_all(applier, objects, pool, dry_run=True)
        try:
            if release is None:
                apply_all(applier, objects, pool, dry_run=False)
            deployed = Deployed(
                kube=kube,
                namespace=namespace,
                source=source,
                objects=objects,
                base_url="http://127.0.0.1:"
                f"{reached.service['spec']['ports'][reached.port_index]['nodePort']}",
                node_ports={
                    s["metadata"]["name"]: s["spec"]["ports"][0]["nodePort"] for s in services
                },
                service_url=f"http://{reached.service['metadata']['name']}.{namespace}.svc:"
                f"{reached.service['spec']['ports'][reached.port_index]['port']}",
                kubectl=kubectl,
                applier=applier,
                own_service=reached.service if reached.own else None,
                release=release,
                held_images=held_images,
                namespace_uid=namespace_uid,
            )
            if release is not None:
                deployed._helm().install(release, deployed._post_render(images or {}, {}))
                apply_all(applier, [reached.service] if reached.own else [], pool, dry_run=False)
            rotation.note(deployed.node_ports.values())
            wait_rolled_out(kube, namespace, deployed.deployments, timeout=timeout)
            for name in deployed.rollouts:
                ArgoRollout(kube, namespace, name).wait_healthy(timeout=timeout)
            if wait_node_ports:
                wait_node_ports_answer(list(deployed.node_ports.values()), timeout=timeout)
        except BaseException:
            # Interrupted or failed: leave nothing behind unless asked to.
            if not keep_on_failure:
                if release is not None:
                    with contextlib.suppress(CommandFailed):  # the objects go all the same
                        Helm(kube.kubeconfig, kube.context).uninstall(release, namespace)
                applier.delete(objects, timeout=DEFAULT_TEARDOWN_TIMEOUT)
            raise
    return deployed
