"""What an experiment run goes by and leaves behind, for the sentences that explain it.

`Timings` are the service's times the run waits and judges by, each naming where it comes
from (the spec's self_healing.ready_within, ...); the harness hands them to the probes in the
configuration. `RunFacts` is what a finished run left: the timeline, the method's actions and
their outputs, the Deployment's pod template and the PodDisruptionBudgets as the API serves
them. `ProbeRun` is one probe as the journal has it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from harness.chaos.probes import LEAVES_ENDPOINTS_WITHIN, READY_WITHIN, REQUEST_TIMEOUT
from harness.kube import Kube
from harness.observe import Timeline
from harness.spec import ServiceSpec

DEFAULT_READY_WITHIN_S = 60.0
PROBES_MODULE = "harness.chaos.probes"


def short_json(value: Any, limit: int = 200) -> str:
    """An activity's output as JSON text, cut for notes and timeline marks."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Timing:
    """A time the run waits for or judges by, and where it comes from."""

    seconds: float
    source: str

    def __str__(self) -> str:
        return f"{self.seconds:g}s ({self.source})"


@dataclass(frozen=True)
class Timings:
    """The service's times an experiment runs by; its probes get them in the configuration."""

    ready_within: Timing
    leaves_endpoints_within: Timing
    request_timeout: Timing

    @classmethod
    def of(cls, service: ServiceSpec, recover_within_s: float | None = None) -> Timings:
        """The spec's times for `service`; an experiment's `recover_within_s` wins over its
        self_healing.ready_within.

        Example:
            >>> Timings.of(spec.service("demo")).ready_within   # doctest: +SKIP
            Timing(seconds=60.0, source="the spec's self_healing.ready_within")
        """
        if recover_within_s is not None:
            ready = Timing(recover_within_s, "the experiment's recover_within_s")
        elif service.self_healing is not None:
            ready = Timing(
                service.self_healing.ready_within_s, "the spec's self_healing.ready_within"
            )
        else:
            ready = Timing(DEFAULT_READY_WITHIN_S, "the harness's default: the spec has no "
                           "self_healing.ready_within")  # fmt: skip
        if service.probes is not None:
            leaves = Timing(
                service.probes.readiness_leaves_endpoints_within_s,
                "the spec's probes.readiness_leaves_endpoints_within",
            )
        else:
            leaves = replace(ready, source=f"{ready.source}; the spec has no probes section")
        return cls(ready, leaves, Timing(service.load.timeout_s, "the spec's load.timeout"))

    def configuration(self) -> dict[str, float]:
        """The configuration keys the probes wait by."""
        return {
            READY_WITHIN: self.ready_within.seconds,
            LEAVES_ENDPOINTS_WITHIN: self.leaves_endpoints_within.seconds,
            REQUEST_TIMEOUT: self.request_timeout.seconds,
        }


@dataclass(frozen=True)
class RunFacts:
    """What the sentences are made of: the record of one run and the service's settings.

    `containers` and `pdbs` are as the API serves them (camelCase keys); `actions` holds the
    method's actions as (function, output); `terminations` the last termination of each
    container ("pod/container" -> "OOMKilled, exit 137").
    """

    deployment: str
    container: str
    replicas: int
    timings: Timings
    timeline: Timeline
    started: float
    actions: tuple[tuple[str, Any], ...] = ()
    containers: tuple[Mapping[str, Any], ...] = ()
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pdbs: tuple[Mapping[str, Any], ...] = ()
    terminations: Mapping[str, str] = field(default_factory=dict)
    load_path: str = "/"  # what `service_answers` asks for unless given a path


def method_actions(journal: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The method's actions as (function, output), in the order they ran."""
    return tuple(
        (((run.get("activity") or {}).get("provider") or {}).get("func", ""), run.get("output"))
        for run in journal.get("run") or []
        if (run.get("activity") or {}).get("type") == "action"
    )


def collect_facts(
    kube: Kube,
    namespace: str,
    service: ServiceSpec,
    *,
    journal: Mapping[str, Any],
    timeline: Timeline,
    timings: Timings,
    started: float,
) -> RunFacts:
    """Read what the sentences need while the service is still deployed.

    What the API does not answer is left out: the sentences then say less, and the verdicts
    themselves are unchanged.
    """
    facts = RunFacts(
        service.deployment,
        service.container,
        0,
        timings,
        timeline,
        started,
        actions=method_actions(journal),
        load_path=service.load.path,
    )
    serialize = kube.api_client.sanitize_for_serialization
    try:
        template = serialize(
            kube.apps.read_namespaced_deployment(service.deployment, namespace).spec
        )
        facts = replace(
            facts,
            replicas=template.get("replicas") or 0,
            containers=tuple(template["template"]["spec"]["containers"]),
            pod_labels=template["template"].get("metadata", {}).get("labels") or {},
        )
        budgets = kube.policy.list_namespaced_pod_disruption_budget(namespace).items
        facts = replace(facts, pdbs=tuple(serialize(b) for b in budgets))
        pods = kube.core.list_namespaced_pod(namespace).items
        facts = replace(facts, terminations=last_terminations(serialize(p) for p in pods))
    except (ApiException, urllib3.exceptions.HTTPError):
        pass
    return facts


def last_terminations(pods: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each container's last termination ("pod/container" -> "OOMKilled, exit 137")."""
    found = {}
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (status.get("lastState") or {}).get("terminated")
            if ended:
                reason = ended.get("reason") or "terminated"
                found[f"{pod['metadata']['name']}/{status['name']}"] = (
                    f"{reason}, exit {ended.get('exitCode')}"
                )
    return found


@dataclass(frozen=True)
class ProbeRun:
    """One probe as the journal has it: what it returned and when it ran (epoch seconds)."""

    name: str
    func: str
    output: Any
    tolerance: Any
    arguments: Mapping[str, Any]
    started: float
    ended: float

    @classmethod
    def of(cls, entry: Mapping[str, Any], *, default_start: float) -> ProbeRun:
        activity = entry.get("activity") or {}
        provider = activity.get("provider") or {}
        func = provider.get("func", "") if provider.get("module") == PROBES_MODULE else ""
        return cls(
            str(activity.get("name")),
            func,
            entry.get("output"),
            activity.get("tolerance"),
            provider.get("arguments") or {},
            _epoch(entry.get("start"), default_start),
            _epoch(entry.get("end"), math.inf),
        )


def _epoch(stamp: str | None, default: float) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else default
