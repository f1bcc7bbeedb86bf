"""Argo Rollouts: its controller, built here and installed on demand, and the Rollouts it runs.

The controller is built from the Go module proxy at a pinned version (the module's
cmd/rollouts-controller, static, as the cluster's components) into an image cached like the
demo's, and installed from the same module's manifests/install.yaml (its CRDs, RBAC and
Deployment, in namespace `argo-rollouts`) the first time a service whose spec says
`rollout: {controller: argo-rollouts}` is deployed on a local or kind cluster. On an
`existing` cluster the harness installs nothing cluster-wide: the controller must be there.

`ArgoRollout` reads a Rollout's status and promotes it as `kubectl argo rollouts promote`
does; `rollout_steps` records each change of its step, phase and analysis on the test's
timeline, the record the Argo scenarios judge.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.errors import InvalidConfiguration, WaitAborted
from harness.kube import API_NOT_UP, Kube
from harness.progress import step
from harness.render import Object
from harness.wait import Pending, wait_for

MODULE = "github.com/argoproj/argo-rollouts"
# v1.10.2 and v1.9.3 need Go 1.26.10; this machine's toolchain is 1.26.8.
VERSION = "v1.10.1"
CONTROLLER_PACKAGE = f"{MODULE}/cmd/rollouts-controller"
CONTROLLER_REF = f"localhost/kube-harness/argo-rollouts:{VERSION}"
NAMESPACE = "argo-rollouts"
GROUP, API_VERSION, ROLLOUTS = "argoproj.io", "v1alpha1", "rollouts"
API_GROUP_VERSION = f"{GROUP}/{API_VERSION}"
ROLLOUT_CRD = f"{ROLLOUTS}.{GROUP}"
# What Argo adds to a Service's selector to point it at one ReplicaSet.
ROLLOUT_HASH_LABEL = "rollouts-pod-template-hash"
CONTROLLER_READY_S = 180.0
# Kinds of install.yaml that live in a namespace (the rest are cluster-wide).
_NAMESPACED = {"ServiceAccount", "ConfigMap", "Secret", "Service", "Deployment"}


def uses_argo_rollouts(objects: list[Object]) -> bool:
    """Whether rendered manifests hold Argo Rollouts objects (Rollout, AnalysisTemplate)."""
    return any(str(o.get("apiVersion", "")).startswith(f"{GROUP}/") for o in objects)


def controller_image() -> Path:
    """Archive of the controller's image: the pinned rollouts-controller, as upstream's
    image runs it (entrypoint /bin/rollouts-controller, user nonroot, home its workdir)."""
    from harness.cluster.build import go_program
    from harness.images.builders import NONROOT_USER, layered_image

    binary = go_program(CONTROLLER_PACKAGE, VERSION)
    return layered_image(
        CONTROLLER_REF,
        files={"bin/rollouts-controller": binary},
        entrypoint=["/bin/rollouts-controller"],
        name="argo-rollouts",
        user=NONROOT_USER,
        workdir="/home/argo-rollouts",
    )


def install_manifests(install_yaml: str, *, image: str) -> list[Object]:
    """Upstream's install.yaml for namespace `argo-rollouts`, its controller running `image`
    (loaded on the nodes, never pulled), preceded by the namespace."""
    objects: list[Object] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    ]
    for made in yaml.safe_load_all(install_yaml):
        if not made:
            continue
        if made["kind"] in _NAMESPACED:
            made["metadata"]["namespace"] = NAMESPACE
        if made["kind"] == "Deployment":
            for container in made["spec"]["template"]["spec"]["containers"]:
                container["image"] = image
                container["imagePullPolicy"] = "IfNotPresent"
        objects.append(made)
    return objects


def provide_argo_rollouts(cluster: Any, kube: Kube) -> None:
    """Install the pinned controller and its CRDs on `cluster` once, and wait until it runs.

    Raises:
        InvalidConfiguration: an `existing` cluster without Argo Rollouts.
        BuildFailed, GoToolchainMissing: the controller cannot be built.
        WaitTimeout: the controller did not become available.
    """
    from harness.cluster.addons import install_on_demand
    from harness.cluster.build import module_source

    if cluster.name == "existing":
        if not _crd_installed(kube):
            raise InvalidConfiguration(
                "the cluster has no Argo Rollouts (no CRD rollouts.argoproj.io), and the "
                "harness installs nothing cluster-wide on an existing cluster",
                fix=f"install Argo Rollouts {VERSION} on it (kubectl apply -n argo-rollouts "
                "-f install.yaml of its release), or use the local or kind provider",
            )
        return

    def manifests() -> list[Object]:
        install_yaml = module_source(MODULE, VERSION) / "manifests" / "install.yaml"
        return install_manifests(install_yaml.read_text(), image=CONTROLLER_REF)

    install_on_demand(
        cluster,
        addon="argo-rollouts",
        shown=f"Argo Rollouts {VERSION}",
        running=lambda: _controller_running(kube),
        images=lambda: [controller_image()],
        manifests=manifests,
        timeout=CONTROLLER_READY_S,
    )


def _crd_installed(kube: Kube) -> bool:
    """The Rollout CRD is established (the API serves Rollouts)."""
    try:
        crd = client.ApiextensionsV1Api(kube.api_client).read_custom_resource_definition(
            ROLLOUT_CRD
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    conditions = crd.status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _controller_running(kube: Kube) -> bool:
    """The pinned controller's Deployment is available and its CRDs are served."""
    try:
        deployment = kube.apps.read_namespaced_deployment("argo-rollouts", NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    images = [c.image for c in deployment.spec.template.spec.containers]
    return (
        images == [CONTROLLER_REF]
        and bool(deployment.status.available_replicas)
        and _crd_installed(kube)
    )


@dataclass(frozen=True)
class RolloutState:
    """What a Rollout's status says, in the words of `kubectl argo rollouts get`.

    Attributes:
        phase: Healthy, Progressing, Paused or Degraded.
        step: the index of the canary step it is at (None for blue-green or none yet).
        weight: the canary's share (0..1) its last setWeight step asked for.
        paused: the reasons it is paused for (CanaryPauseStep, BlueGreenPause, ...).
        aborted: whether it was aborted (by a failed analysis or by hand).
        message: the controller's message (why it is degraded or aborted).
        analysis: the phase of the analysis run of the current canary step, or of the
            blue-green pre-promotion analysis, if any.
        stable, current: pod-template hashes of the stable and the newest ReplicaSet.
        preview, active: the pod-template hashes the blue-green Services select.
        updated, available: pods of the newest ReplicaSet; available pods of all of them.
    """

    phase: str
    step: int | None
    weight: float
    paused: tuple[str, ...]
    aborted: bool
    message: str
    analysis: str
    stable: str
    current: str
    preview: str = ""
    active: str = ""
    updated: int = 0
    available: int = 0

    @property
    def healthy(self) -> bool:
        """Fully promoted: Healthy, its newest ReplicaSet the stable one."""
        return self.phase == "Healthy" and self.stable == self.current and not self.aborted

    def summary(self) -> dict[str, Any]:
        """What the timeline keeps of it."""
        return {
            "phase": self.phase,
            "step": self.step,
            "weight": self.weight,
            "paused": list(self.paused),
            "aborted": self.aborted,
            "analysis": self.analysis,
            "message": self.message,
            "promoted": self.healthy,
            "updated": self.updated,
            "available": self.available,
        }


def rollout_state(rollout: Mapping[str, Any]) -> RolloutState:
    """The state of Rollout object `rollout` (as the API returns it)."""
    status = rollout.get("status") or {}
    steps = ((rollout.get("spec") or {}).get("strategy") or {}).get("canary", {}).get("steps")
    index = status.get("currentStepIndex")
    weight = 0.0
    if steps and index is not None:
        weights = [s["setWeight"] for s in steps[: index + 1] if "setWeight" in s]
        # Past the last step a canary is promoted: its ReplicaSet is the stable one.
        weight = 1.0 if index >= len(steps) else (weights[-1] / 100 if weights else 0.0)
    canary = status.get("canary") or {}
    blue_green = status.get("blueGreen") or {}
    run = canary.get("currentStepAnalysisRunStatus") or blue_green.get(
        "prePromotionAnalysisRunStatus"
    )
    analysis = (run or {}).get("status", "")
    return RolloutState(
        phase=status.get("phase", ""),
        step=index,
        weight=weight,
        paused=tuple(c.get("reason", "") for c in status.get("pauseConditions") or []),
        aborted=bool(status.get("abort")),
        message=status.get("message", ""),
        analysis=analysis,
        stable=status.get("stableRS", ""),
        current=status.get("currentPodHash", ""),
        preview=blue_green.get("previewSelector", ""),
        active=blue_green.get("activeSelector", ""),
        updated=status.get("updatedReplicas") or 0,
        available=status.get("availableReplicas") or 0,
    )


@dataclass
class ArgoRollout:
    """Rollout `name` in `namespace`: its state, and promote as the kubectl plugin does it
    (a status patch; the controller does the rest).

    Example:
        >>> rollout = ArgoRollout(kube, "ns", "demo")               # doctest: +SKIP
        >>> rollout.wait(lambda s: bool(s.paused), what="a pause", timeout=60)  # doctest: +SKIP
        >>> rollout.promote()                                       # doctest: +SKIP
    """

    kube: Kube
    namespace: str
    name: str

    def state(self) -> RolloutState:
        return rollout_state(self._read())

    def _read(self) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(
            GROUP, API_VERSION, self.namespace, ROLLOUTS, self.name
        )

    def promote(self) -> None:
        """Go on from a pause (an indefinite canary pause, or a blue-green preview waiting)."""
        with step(f"promoting Rollout {self.name}"):
            if self._read()["spec"].get("paused"):
                self._patch({"spec": {"paused": False}})
            self._patch({"status": {"pauseConditions": None}}, subresource="status")

    def _patch(self, patch: dict[str, Any], *, subresource: str = "") -> None:
        custom = self.kube.custom
        if subresource == "status":
            custom.patch_namespaced_custom_object_status(
                GROUP, API_VERSION, self.namespace, ROLLOUTS, self.name, patch
            )
        else:
            custom.patch_namespaced_custom_object(
                GROUP, API_VERSION, self.namespace, ROLLOUTS, self.name, patch
            )

    def wait(
        self,
        reached: Callable[[RolloutState], bool],
        *,
        what: str,
        timeout: float,
        after_abort: bool = False,
    ) -> RolloutState:
        """Wait until `reached(state)` holds; the state then.

        Raises:
            WaitAborted: the Rollout was aborted (unless that is what is waited for, or
                what is waited for comes `after_abort`).
            WaitTimeout: naming its last state.
        """

        def condition() -> RolloutState | Pending:
            state = self.state()
            if reached(state):
                return state
            if state.aborted and not after_abort:
                raise WaitAborted(
                    f"Rollout {self.name} was aborted while waiting for {what}: "
                    f"{state.message or state.phase}",
                    fix="see the analysis run's measurements (kubectl get analysisrun -o yaml)",
                )
            return Pending(f"{state.phase}, step {state.step}, {state.message}".strip(", "))

        return wait_for(
            condition,
            what=f"Rollout {self.name}: {what}",
            timeout=timeout,
            interval=0.5,
            transient=(*API_NOT_UP, ApiException),
        )

    def wait_healthy(self, *, timeout: float) -> RolloutState:
        """Wait until it is fully rolled out (see `RolloutState.healthy`)."""
        return self.wait(lambda s: s.healthy, what="healthy", timeout=timeout)


@contextmanager
def rollout_steps(rollout: ArgoRollout, timeline: Any, *, every_s: float = 0.5) -> Iterator[None]:
    """Mark each change of `rollout`'s step, phase, pause, analysis or promotion on
    `timeline` ("argo: Paused, step 1, weight 25%, paused (CanaryPauseStep)") while the
    block runs."""
    stop = threading.Event()

    def follow() -> None:
        last: tuple[str, bool] | None = None
        while not stop.is_set():
            try:
                summary = rollout.state().summary()
            except (*API_NOT_UP, ApiException):
                summary = None  # the next look tells
            # A mark per step, phase, pause or analysis change (pod counts move more often,
            # and would crowd the report's charts).
            seen = (describe(summary), summary["promoted"]) if summary else last
            if summary is not None and seen != last:
                timeline.mark(describe(summary), rollout=rollout.name, **summary)
                last = seen
            stop.wait(every_s)

    follower = threading.Thread(target=follow, name=f"rollout-{rollout.name}", daemon=True)
    follower.start()
    try:
        yield
    finally:
        stop.set()
        follower.join(timeout=5)


ARGO_MARK = "argo: "


def describe(summary: Mapping[str, Any]) -> str:
    """A timeline label of a Rollout's state summary."""
    parts = [f"{ARGO_MARK}{summary['phase'] or 'new'}"]
    if summary["step"] is not None:
        parts.append(f"step {summary['step']}, weight {summary['weight']:.0%}")
    if summary["paused"]:
        parts.append(f"paused ({', '.join(summary['paused'])})")
    if summary["analysis"]:
        parts.append(f"analysis {summary['analysis']}")
    if summary["aborted"]:
        parts.append("aborted")
    return ", ".join(parts)


def release_marks(entries: list[Any], *, rollout: str, since: float) -> list[Any]:
    """Rollout `rollout`'s marks (see `rollout_steps`) of the release that began at `since`:
    from the first then that is not promoted (those before show the previous release done)."""
    marks = [
        e
        for e in entries
        if e.type == "MARK" and e.state.get("rollout") == rollout and e.t >= since
    ]
    first = next((n for n, e in enumerate(marks) if not e.state.get("promoted")), len(marks))
    return marks[first:]


def time_of(marks: list[Any], when: Any) -> float | None:
    """The time of the first of `marks` whose state satisfies `when(state)`."""
    return next((e.t for e in marks if when(e.state)), None)


def rollouts_of(objects: list[Object]) -> list[Object]:
    """The Argo Rollouts among rendered manifests."""
    return [o for o in objects if o["kind"] == "Rollout" and o["apiVersion"] == API_GROUP_VERSION]


def rollout_for(objects: list[Object], deployment: str) -> Object | None:
    """The Rollout of rendered manifests that runs `deployment`: the one referring to it
    (`workloadRef`), else the one of that name."""
    rollouts = rollouts_of(objects)
    referring = [
        o for o in rollouts if (o["spec"].get("workloadRef") or {}).get("name") == deployment
    ]
    named = [o for o in rollouts if o["metadata"]["name"] == deployment]
    return next(iter(referring or named), None)


def canary_steps(rollout: Object) -> list[dict[str, Any]]:
    """The canary steps of a Rollout object (none for blue-green)."""
    return list(((rollout["spec"].get("strategy") or {}).get("canary") or {}).get("steps") or [])


def weight_windows(
    marks: list[Any], steps: list[dict[str, Any]], *, ends: float
) -> list[tuple[int, float, float, float]]:
    """Per setWeight step: (index, weight, since, until), from the first of a release's
    `marks` (`release_marks`) past it (its pods all run) until the first at the next setWeight
    step (or `ends`); steps never reached are left out."""
    windows = []
    weights = [(i, s["setWeight"] / 100) for i, s in enumerate(steps) if "setWeight" in s]
    for n, (index, weight) in enumerate(weights):
        since = time_of(marks, lambda state, i=index: (state.get("step") or 0) > i)
        if since is None:
            continue
        nxt = weights[n + 1][0] if n + 1 < len(weights) else None
        until = (
            time_of(marks, lambda state, j=nxt: (state.get("step") or 0) >= j) if nxt else None
        ) or ends
        windows.append((index, weight, since, min(until, ends)))
    return windows


@dataclass(frozen=True)
class Answer:
    """One answer of a smoke request: when it came, its HTTP status (0: none) and the
    version that gave it."""

    t: float
    status: int
    version: str | None


class _Answered:
    """An API-server proxy response (or its error) as harness.load.merge.version_reader reads
    a response: `headers` and `json()`."""

    def __init__(self, status: int, headers: Any, body: bytes | str | None) -> None:
        self.status, self.headers, self.body = status, headers or {}, body or b""

    def json(self) -> Any:
        return json.loads(self.body)


def smoke(
    kube: Kube,
    namespace: str,
    service: str,
    *,
    path: str,
    read_version: Callable[[Any], str | None],
    requests: int,
    every_s: float,
) -> list[Answer]:
    """`requests` GETs of `path` sent to Service `service` through the API server's service
    proxy, `every_s` apart: the smoke test a team runs against a preview, which reaches it
    from the host on every provider."""
    # The proxy needs the port named as the Service names it (by number if it has no name).
    port = kube.core.read_namespaced_service(service, namespace).spec.ports[0]
    target = f"{service}:{port.name or port.port}"
    answers = []
    for _ in range(requests):
        sent = time.time()
        try:
            response = kube.core.connect_get_namespaced_service_proxy_with_path(
                target, namespace, path.lstrip("/"), _preload_content=False,
                _request_timeout=5,
            )  # fmt: skip
            answered = _Answered(response.status, response.headers, response.data)
        except ApiException as exc:
            answered = _Answered(exc.status or 0, exc.headers, exc.body)
        except API_NOT_UP:
            answered = _Answered(0, {}, None)
        answers.append(Answer(time.time(), answered.status, read_version(answered)))
        time.sleep(max(0.0, sent + every_s - time.time()))
    return answers
