"""What a service's manifests say about the Deployment that takes the load, and what follows.

`Workload.of(objects, name)` reads the rendered manifests once: replicas, the containers
(probes, preStop hooks), the progress deadline and the HPAs that target it. Two uses read it:

- `spec_problems` checks the resilience spec against the manifests before any cluster starts
  (named Deployment, container and HPA exist, HPA bounds match);
- the `why_*` sentences say, when a scenario's promise is broken, what in the manifests made
  it so ("Deployment httpbin runs 1 replica: ..."), so that a failure reads as a finding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.render import Object

DEFAULT_PROGRESS_DEADLINE_S = 600.0  # Kubernetes' default progressDeadlineSeconds
PROBE_DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1}
PROBE_DEFAULTS |= {"successThreshold": 1, "failureThreshold": 3}


@dataclass(frozen=True)
class ProbeTimings:
    """One probe's timings, with Kubernetes' defaults where the manifest says nothing."""

    initial: int
    period: int
    timeout: int
    success: int
    failure: int

    @classmethod
    def of(cls, container: Mapping, kind: str) -> ProbeTimings | None:
        probe = container.get(f"{kind}Probe")
        if not isinstance(probe, Mapping):
            return None
        values = {**PROBE_DEFAULTS, **probe}
        return cls(*(int(values[key]) for key in PROBE_DEFAULTS))

    def fails_within(self) -> int:
        """Seconds from the service failing to the probe's verdict, at worst."""
        return self.period * self.failure + self.timeout

    def explain_failure(self) -> str:
        return f"{self.period}s period x {self.failure} failures + {self.timeout}s timeout"

    def allowance(self) -> int:
        """Seconds a start-up may take before this probe gives up on the container."""
        return self.initial + self.period * self.failure

    def explain(self) -> str:
        """How `allowance()` adds up ("5s delay + 10s x 3 failures")."""
        if not self.initial:
            return f"{self.period}s x {self.failure} failures"
        return f"{self.initial}s delay + {self.period}s x {self.failure} failures"


@dataclass(frozen=True)
class Workload:
    """The manifests' facts about one Deployment (see the module docstring)."""

    name: str
    replicas: int
    replicas_set: bool  # False: the manifests leave it at Kubernetes' default of 1
    containers: tuple[Mapping[str, Any], ...]
    hpas: tuple[Object, ...]
    progress_deadline_s: float
    progress_deadline_set: bool

    @classmethod
    def of(cls, objects: Sequence[Object], name: str) -> Workload | None:
        """The Deployment `name` of `objects`, or None when there is none."""
        found = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
        if not found:
            return None
        spec = found[0].get("spec") or {}
        pod = spec.get("template") or {}
        hpas = tuple(
            o
            for o in objects
            if o["kind"] == "HorizontalPodAutoscaler"
            and ((o.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"
            and o["spec"]["scaleTargetRef"].get("name") == name
        )
        return cls(
            name=name,
            replicas=spec.get("replicas", 1),
            replicas_set="replicas" in spec,
            containers=tuple((pod.get("spec") or {}).get("containers") or []),
            hpas=hpas,
            progress_deadline_s=float(
                spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
            ),
            progress_deadline_set="progressDeadlineSeconds" in spec,
        )

    def container(self, name: str) -> Mapping[str, Any] | None:
        return next((c for c in self.containers if c.get("name") == name), None)

    @property
    def serves_alone(self) -> bool:
        """One replica, and no HPA that would keep more."""
        floor = min(((h.get("spec") or {}).get("minReplicas", 1) for h in self.hpas), default=1)
        return self.replicas <= 1 and floor <= 1

    def _replicas_text(self) -> str:
        why = "" if self.replicas_set else " (the manifests set no replicas: 1 is the default)"
        return f"Deployment {self.name} runs {self.replicas} replica{why}"

    # --- findings: why a promise was broken ---------------------------------------------

    def why_unavailable_during_replacement(self) -> str | None:
        """A lost pod (deleted, evicted, its node gone) made requests fail."""
        if self.serves_alone:
            return (
                f"{self._replicas_text()}: while its only pod is replaced or restarted, "
                "nothing serves"
            )
        return None

    def why_unavailable_when_unready(self) -> str | None:
        """Requests failed while one pod was out of the endpoints."""
        if self.serves_alone:
            return (
                f"{self._replicas_text()}: with its only pod out of the endpoints, new "
                "connections are refused"
            )
        return None

    def why_requests_failed_in_rollout(self, container: str) -> str | None:
        """Requests failed while old pods were replaced by new ones."""
        spec = self.container(container) or {}
        reasons = []
        if not ((spec.get("lifecycle") or {}).get("preStop")):
            reasons.append(
                f"container {container} has no preStop hook: an old pod stops serving on "
                "SIGTERM while kube-proxy may still send it new connections"
            )
        if not spec.get("readinessProbe"):
            reasons.append(
                f"container {container} has no readiness probe: new pods take traffic before "
                "they answer"
            )
        if self.serves_alone:
            reasons.append(self._replicas_text())
        return "; ".join(reasons) or None

    def why_slow_start_restarted(self, container: str, delay_s: float) -> str | None:
        """A start-up of `delay_s` was restarted (or stayed unready) before it finished."""
        spec = self.container(container) or {}
        startup = ProbeTimings.of(spec, "startup")
        liveness = ProbeTimings.of(spec, "liveness")
        if startup:
            if startup.allowance() < delay_s:
                return (
                    f"container {container}'s startupProbe gives up after {startup.explain()}"
                    f" = {startup.allowance()}s, shorter than the {delay_s:g}s start-up: the "
                    "kubelet restarts it before it answers"
                )
            return None
        if liveness and liveness.allowance() < delay_s:
            return (
                f"container {container} has no startupProbe, and its livenessProbe restarts it "
                f"after {liveness.explain()} = {liveness.allowance()}s without an answer, "
                f"shorter than the {delay_s:g}s start-up"
            )
        return None

    def why_stuck_not_reported(self, within_s: float) -> str | None:
        """Kubernetes did not report a stuck rollout within `within_s`."""
        if self.progress_deadline_s > within_s:
            default = "" if self.progress_deadline_set else " (the default: the manifests set none)"
            return (
                f"Deployment {self.name}'s progressDeadlineSeconds is "
                f"{self.progress_deadline_s:g}s{default}: Kubernetes reports a stuck rollout "
                f"only after that, not within {within_s:g}s"
            )
        return None


def spec_problems(service: Any, objects: Sequence[Object]) -> list[str]:
    """What in the resilience spec's service the manifests contradict, each a sentence.

    Args:
        service: a harness.spec.ServiceSpec.
        objects: its manifests, rendered.
    """
    workload = Workload.of(objects, service.deployment)
    if workload is None:
        have = [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"]
        return [
            f"deployment: the manifests have no Deployment {service.deployment!r} "
            f"(they have: {', '.join(have) or 'none'})"
        ]
    problems = []
    if workload.container(service.container) is None:
        names = ", ".join(str(c.get("name")) for c in workload.containers)
        problems.append(
            f"container: Deployment {workload.name} has no container {service.container!r} "
            f"(it has: {names})"
        )
    hpa = service.hpa
    if hpa is not None:
        named = [h for h in workload.hpas if h["metadata"]["name"] == hpa.name]
        if not named:
            have = ", ".join(h["metadata"]["name"] for h in workload.hpas) or "none"
            problems.append(
                f"expect.hpa.name: no HorizontalPodAutoscaler {hpa.name!r} targets Deployment "
                f"{workload.name} (HPAs that do: {have})"
            )
        else:
            bounds = named[0]["spec"]
            minimum, maximum = bounds.get("minReplicas", 1), bounds.get("maxReplicas")
            if (hpa.min, hpa.max) != (minimum, maximum):
                problems.append(
                    f"expect.hpa: min {hpa.min} / max {hpa.max}, but HorizontalPodAutoscaler "
                    f"{hpa.name} says {minimum} / {maximum}"
                )
    rollout = service.rollout
    if rollout is not None and rollout.controller == "argo-rollouts":
        problems += _argo_problems(objects, workload.name, rollout.strategy)
    elif rollout is not None and rollout.strategy in ROLES:
        problems += _role_problems(objects, workload.name, rollout)
    if service.network_policy is not None:
        problems += _network_policy_problems(objects, workload.name)
    return problems


def _network_policy_problems(objects: Sequence[Object], deployment: str) -> list[str]:
    """A promise of what NetworkPolicies let through needs one that selects the pods for
    ingress."""
    from harness.network_policy import policy_types, selects

    made = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment
    )
    labels = ((made["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if any(
        "Ingress" in policy_types(p) and selects((p.get("spec") or {}).get("podSelector"), labels)
        for p in policies
    ):
        return []
    have = ", ".join(p["metadata"]["name"] for p in policies) or "none"
    return [
        f"expect.network_policy: no NetworkPolicy of the manifests selects Deployment "
        f"{deployment}'s pods for ingress (NetworkPolicies: {have}), so nothing keeps any port "
        "closed; add one whose podSelector matches the pod template's labels"
    ]


# The key of a Rollout's `spec.strategy` for each strategy of the spec.
ARGO_STRATEGIES = {"blue-green": "blueGreen", "canary": "canary"}


def _argo_problems(objects: Sequence[Object], deployment: str, strategy: str) -> list[str]:
    """What keeps an Argo Rollout from carrying out the spec's release of `deployment`."""
    from harness.argo_rollouts import rollout_for

    made = rollout_for(objects, deployment)
    if made is None:
        return [
            "expect.rollout.controller: argo-rollouts needs a Rollout (argoproj.io/v1alpha1) "
            f"that runs Deployment {deployment} (`workloadRef` to it, or its name); the "
            "manifests have none (see manifests/overlays/argo-canary)"
        ]
    has = sorted((made["spec"].get("strategy") or {}).keys())
    if ARGO_STRATEGIES.get(strategy) not in has:
        return [
            f"expect.rollout.strategy: {strategy}, but Rollout {made['metadata']['name']} "
            f"has strategy {', '.join(has) or 'none'}; make them agree"
        ]
    return []


# What the running Deployment is in each progressive strategy, and how the Services select.
ROLES = {"blue-green": "blue", "canary": "stable"}
ROLE_OVERLAYS = {
    "blue-green": "manifests/overlays/blue-green",
    "canary": "manifests/overlays/canary",
}


def _role_problems(objects: Sequence[Object], deployment: str, rollout: Any) -> list[str]:
    """What keeps Deployment `deployment` from its role in a blue-green or canary release:
    `label: ROLE` in its selector and pod template (else it would adopt the copy's pods),
    and a Service that selects it so (blue-green: the switch moves it) or selects its pods
    without the label (canary: it reaches both)."""
    label, strategy, role = rollout.label, rollout.strategy, ROLES[rollout.strategy]
    running = next(
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment
    )
    spec = running.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    template = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    fix = f"see {ROLE_OVERLAYS[strategy]} for the patches that do it"
    problems = []
    if selector.get(label) != role or template.get(label) != role:
        problems.append(
            f"expect.rollout: strategy {strategy} needs `{label}: {role}` in Deployment "
            f"{deployment}'s selector and pod template ({fix})"
        )
    selectors = [
        (o.get("spec") or {}).get("selector") or {} for o in objects if o["kind"] == "Service"
    ]
    if strategy == "blue-green" and not any(s.get(label) == role for s in selectors):
        problems.append(
            f"expect.rollout: strategy blue-green switches the Services that select "
            f"`{label}: blue`, and no Service of the manifests does ({fix})"
        )
    reaching = [s for s in selectors if s and all(template.get(k) == v for k, v in s.items())]
    if strategy == "canary" and not any(label not in s for s in reaching):
        problems.append(
            f"expect.rollout: strategy canary needs a Service that selects Deployment "
            f"{deployment}'s pods without `{label}`, so that it reaches the canary's too ({fix})"
        )
    return problems
