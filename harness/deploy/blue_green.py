"""Blue-green with plain Kubernetes objects, as teams do it without a controller.

The running Deployment is the blue slot: its selector and pod template carry `LABEL: blue`,
and the Services that take traffic select `LABEL: blue` too. Green is what the next rollout
would apply to that Deployment, renamed `<deployment>-green`, labelled `LABEL: green` and
started beside blue with blue's replica count. A switch moves the selector of every Service
that selects the label (the manifests' own and the harness's NodePort Service alike):
kube-proxy sends new connections to the other slot at once, while connections opened before
stay where they are, which is what the spec's `grace` allows for.
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


def green_of(blue: Object, *, label: str, replicas: int) -> Object:
    """Deployment `blue` (as rendered for the next version) as the green slot beside it."""
    green = copy.deepcopy(blue)
    green["metadata"]["name"] = f"{blue['metadata']['name']}-{GREEN}"
    green["metadata"].setdefault("labels", {})[label] = GREEN
    spec = green["spec"]
    spec["replicas"] = replicas
    spec["selector"]["matchLabels"][label] = GREEN
    spec["template"]["metadata"]["labels"][label] = GREEN
    return green


@dataclass
class BlueGreen:
    """The two slots of `deployment` in a deployed service, and the switch between them.

    Example:
        >>> slots = BlueGreen(deployed, "demo", label="slot")          # doctest: +SKIP
        >>> slots.start_green(spec.image_override("next"), timeout=120)  # doctest: +SKIP
        >>> slots.switch(GREEN); ...; slots.switch(BLUE)                # doctest: +SKIP
    """

    deployed: Deployed
    deployment: str
    label: str

    @property
    def green(self) -> str:
        return f"{self.deployment}-{GREEN}"

    def switched_services(self) -> list[str]:
        """The Services whose selector names the slot label (those a switch moves)."""
        services = self.deployed.kube.core.list_namespaced_service(self.deployed.namespace).items
        return sorted(s.metadata.name for s in services if self.label in (s.spec.selector or {}))

    def start_green(self, images: Mapping[str, str], *, timeout: float) -> None:
        """Start green with `images` (as `Deployed.rollout` takes them) and wait until it
        has rolled out; blue keeps serving meanwhile.

        Raises:
            WaitAborted, WaitTimeout: green cannot roll out (see `wait_rolled_out`).
        """
        kube, namespace = self.deployed.kube, self.deployed.namespace
        blue = next(
            o
            for o in self.deployed.render_with(images)
            if o["kind"] == "Deployment" and o["metadata"]["name"] == self.deployment
        )
        replicas = kube.apps.read_namespaced_deployment(self.deployment, namespace).spec.replicas
        green = green_of(blue, label=self.label, replicas=replicas)
        if self.deployed.held_images is not None:  # a missing image named before it is applied
            check_images_available(kube, [green], held=self.deployed.held_images)
        with step(f"starting {self.green} beside {self.deployment} in {namespace}"):
            self.deployed.applier.apply(green)
            wait_rolled_out(kube, namespace, [self.green], timeout=timeout)

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
