"""Progressive delivery with plain Kubernetes objects, as teams do it without a controller:
blue-green and canary releases of one Deployment of a deployed service.

Both start a copy of the Deployment beside it: what the next rollout would apply to it
(`Deployed.render_with`), renamed `<deployment>-<role>` and labelled `LABEL: <role>` in its
selector and pod template, so that neither Deployment adopts the other's pods. The manifests
label the running Deployment's pods for its own role (`LABEL: blue`, `LABEL: stable`); what
differs is how traffic reaches the copy:

- blue-green: the Services select `LABEL: blue`; a switch moves every Service that names the
  label to `green` (the manifests' own and the harness's NodePort Service alike). kube-proxy
  sends new connections to the other slot at once, while connections opened before stay
  where they are, which is what the spec's `grace` allows for.
- canary: the Services leave the label out and select both; the canary's share of the
  traffic is its share of the Ready pods (kube-proxy picks an endpoint per connection at
  random), set by its replica count beside the stable Deployment's.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

from harness.deploy.deployed import Deployed
from harness.deploy.rollout import wait_rolled_out
from harness.image_availability import check_images_available
from harness.progress import step
from harness.render import Object

BLUE, GREEN = "blue", "green"
STABLE, CANARY = "stable", "canary"


def copy_of(deployment: Object, *, label: str, role: str, replicas: int) -> Object:
    """Deployment `deployment` (as rendered for the next version) as `role` beside it."""
    made = copy.deepcopy(deployment)
    made["metadata"]["name"] = f"{deployment['metadata']['name']}-{role}"
    made["metadata"].setdefault("labels", {})[label] = role
    spec = made["spec"]
    spec["replicas"] = replicas
    spec["selector"]["matchLabels"][label] = role
    spec["template"]["metadata"]["labels"][label] = role
    return made


def canary_replicas(stable: int, weight: float) -> int:
    """Canary pods beside `stable` pods that give the canary closest to the share `weight`
    (0..1, exclusive) of all of them; at least one."""
    return max(1, round(stable * weight / (1 - weight)))


@dataclass
class _Copy:
    """A copy of `deployment` in role `role` beside it (see the module docstring)."""

    deployed: Deployed
    deployment: str
    label: str
    role: str

    @property
    def name(self) -> str:
        return f"{self.deployment}-{self.role}"

    def replicas_of(self, deployment: str) -> int:
        kube, namespace = self.deployed.kube, self.deployed.namespace
        return kube.apps.read_namespaced_deployment(deployment, namespace).spec.replicas

    def start(self, images: Mapping[str, str], *, replicas: int, timeout: float) -> None:
        """Start the copy with `images` (as `Deployed.rollout` takes them) and `replicas`,
        and wait until it has rolled out; the Deployment keeps serving meanwhile.

        Raises:
            InvalidConfiguration: an image is on no node and not pullable (nothing applied).
            WaitAborted, WaitTimeout: the copy cannot roll out (see `wait_rolled_out`).
        """
        kube, namespace = self.deployed.kube, self.deployed.namespace
        original = next(
            o
            for o in self.deployed.render_with(images)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == self.deployment
        )
        made = copy_of(original, label=self.label, role=self.role, replicas=replicas)
        if self.deployed.held_images is not None:  # named before anything is applied
            check_images_available(kube, [made], held=self.deployed.held_images)
        with step(f"starting {self.name} beside {self.deployment} in {namespace}"):
            self.deployed.applier.apply(made)
            wait_rolled_out(kube, namespace, [self.name], timeout=timeout)

    def scale(self, replicas: int, *, timeout: float) -> None:
        """Scale the copy and wait until exactly that many pods of it run (0: none left)."""
        kube, namespace = self.deployed.kube, self.deployed.namespace
        with step(f"scaling {self.name} to {replicas}"):
            kube.apps.patch_namespaced_deployment_scale(
                self.name, namespace, {"spec": {"replicas": replicas}}
            )
            wait_rolled_out(kube, namespace, [self.name], timeout=timeout, old_pods_gone=True)


class BlueGreen(_Copy):
    """Green beside blue `deployment`, and the switch between them.

    Example:
        >>> slots = BlueGreen(deployed, "demo", label="slot")            # doctest: +SKIP
        >>> slots.start_green(spec.image_override("next"), timeout=120)  # doctest: +SKIP
        >>> slots.switch(GREEN); ...; slots.switch(BLUE)                # doctest: +SKIP
    """

    def __init__(self, deployed: Deployed, deployment: str, *, label: str) -> None:
        super().__init__(deployed, deployment, label, GREEN)

    def start_green(self, images: Mapping[str, str], *, timeout: float) -> None:
        """Green with `images` and blue's replica count now, rolled out."""
        self.start(images, replicas=self.replicas_of(self.deployment), timeout=timeout)

    def switched_services(self) -> list[str]:
        """The Services whose selector names the slot label (those a switch moves)."""
        services = self.deployed.kube.core.list_namespaced_service(self.deployed.namespace).items
        return sorted(s.metadata.name for s in services if self.label in (s.spec.selector or {}))

    def switch(self, slot: str) -> list[str]:
        """Point every Service that selects the slot label at `slot`; the Services moved."""
        moved = self.switched_services()
        patch = {"spec": {"selector": {self.label: slot}}}
        with step(f"switching {', '.join(moved)} to {slot}"):
            for name in moved:
                self.deployed.kube.core.patch_namespaced_service(
                    name, self.deployed.namespace, patch
                )
        return moved


class Canary(_Copy):
    """A canary beside stable `deployment`, weighted by replica counts.

    Example:
        >>> canary = Canary(deployed, "demo", label="track")                 # doctest: +SKIP
        >>> canary.set_weight(spec.image_override("next"), 0.25, timeout=120)  # doctest: +SKIP
        >>> canary.promote(spec.image_override("next"), timeout=180)          # doctest: +SKIP
    """

    def __init__(self, deployed: Deployed, deployment: str, *, label: str) -> None:
        super().__init__(deployed, deployment, label, CANARY)
        self.started = False

    def set_weight(self, images: Mapping[str, str], weight: float, *, timeout: float) -> float:
        """Give the canary (with `images`) about the share `weight` of the pods, started on
        first use; the share it got, once its pods all run."""
        stable = self.replicas_of(self.deployment)
        replicas = canary_replicas(stable, weight)
        if self.started:
            self.scale(replicas, timeout=timeout)
        else:
            self.start(images, replicas=replicas, timeout=timeout)
            self.started = True
        return replicas / (stable + replicas)

    def abort(self, *, timeout: float) -> None:
        """Take the canary out: scaled to 0, its pods gone."""
        self.scale(0, timeout=timeout)

    def promote(self, images: Mapping[str, str], *, timeout: float) -> None:
        """Roll the stable Deployment out to `images` (the canary serves on meanwhile), then
        take the canary out."""
        self.deployed.rollout(images, timeout=timeout)
        self.scale(0, timeout=timeout)
