"""One plain sentence per probe or verdict kind: what broke and, where the record tells, why.

Each function is pure: it reads `RunFacts` (harness.chaos.facts) and returns one sentence,
starting in lower case, with no full stop ("the pod stayed Ready while partitioned: its
readiness probe is an exec probe that dials localhost ..."). `PROBE_SENTENCES` maps the
harness's probes to theirs; `probe_sentence` picks one for any journal entry.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harness.chaos.facts import ProbeRun, RunFacts, Timing, short_json
from harness.chaos.faults import NODE_ACTIONS
from harness.chaos.ledger import Injected
from harness.load import LoadResult, Verdict

# Sentences in one note are joined by this; inside a sentence lists use commas.
JOIN = "; "
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
_DIALS_LOCALHOST = re.compile(r"localhost|127\.0\.0\.1|\[::1\]|(?:^|[\s=]):\d{2,5}\b")


def _owned(state: Mapping[str, Any], deployment: str) -> bool:
    # Pods are owned by ReplicaSets named <deployment>-<pod-template-hash>.
    return (state.get("owner") or "").rsplit("-", 1)[0] == deployment


def _pods(facts: RunFacts, at: float) -> dict[str, Mapping[str, Any]]:
    """The Deployment's pods at `at` as the timeline has them, terminating ones left out."""
    return {
        name: state
        for name, state in facts.timeline.states_at("Pod", at).items()
        if _owned(state, facts.deployment) and not state.get("deleting")
    }


def _last_event(facts: RunFacts, obj: str, reason: str, at: float) -> str | None:
    messages = [
        e.state.get("message")
        for e in facts.timeline.of("Event", until=at)
        if e.state.get("object") == obj and e.state.get("reason") == reason
    ]
    return messages[-1] if messages else None


def _trouble(facts: RunFacts, name: str, state: Mapping[str, Any], at: float) -> str:
    """Why one pod is not Ready, as far as the record tells."""
    for c in state.get("containers") or []:
        if not c.get("ready") and c.get("state", "running") != "running":
            kind, _, reason = str(c.get("state")).partition(":")
            return f"{name}: container {c.get('name')} {kind}" + (f" ({reason})" if reason else "")
    if state.get("phase") == "Pending":
        why = _last_event(facts, f"Pod/{name}", "FailedScheduling", at)
        return f"{name}: Pending" + (f" ({why})" if why else "")
    why = _last_event(facts, f"Pod/{name}", "Unhealthy", at)
    return f"{name}: {state.get('phase') or 'no phase'}, not Ready" + (f" ({why})" if why else "")


def _listing(items: list[str], limit: int = 3) -> str:
    if not items:
        return ""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ": " + ", ".join(i.replace(";", ",") for i in items[:limit]) + more


def _not_ready_troubles(facts: RunFacts, at: float) -> list[str]:
    pods = _pods(facts, at)
    troubles = [_trouble(facts, n, s, at) for n, s in sorted(pods.items()) if not s.get("ready")]
    if facts.replicas > len(pods):
        troubles.append(f"{facts.replicas - len(pods)} replica(s) without a pod")
    return troubles


def not_ready_sentence(facts: RunFacts, at: float, *, within: Timing, again: bool = False) -> str:
    """Replicas that were not Ready in time, each with what kept it."""
    pods = _pods(facts, at)
    ready = [n for n, s in pods.items() if s.get("ready")]
    wanted = facts.replicas or len(pods)
    missing = wanted - len(ready)
    if missing <= 0:
        return (
            f"the Deployment {facts.deployment} did not count every replica updated, Ready and "
            f"available within {within}, though its pods were Ready by the end"
        )
    word = "Ready again" if again else "Ready"
    return (
        f"{missing} of {wanted} replicas of {facts.deployment} were not {word} within {within}"
        + _listing(_not_ready_troubles(facts, at))
    )


def _changed_pods(facts: RunFacts, at: float) -> list[str]:
    """Pods of the Deployment at `at` that are new or restarted since the experiment began."""
    before = facts.timeline.states_at("Pod", facts.started)
    changed = []
    for name, state in sorted(_pods(facts, at).items()):
        restarts = {c.get("name"): c.get("restarts", 0) for c in state.get("containers") or []}
        earlier = {
            c.get("name"): c.get("restarts", 0)
            for c in (before.get(name) or {}).get("containers") or []
        }
        if name not in before or any(n > earlier.get(c, 0) for c, n in restarts.items()):
            changed.append(name)
    return changed


def deployment_ready_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    return not_ready_sentence(facts, probe.ended, within=facts.timings.ready_within)


def ready_again_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    within = facts.timings.ready_within
    if not _changed_pods(facts, probe.ended):
        return (
            f"no replica of {facts.deployment} was replaced or restarted within {within}: "
            "the fault did not take effect, or nothing noticed it"
        )
    return not_ready_sentence(facts, probe.ended, within=within, again=True)


def stays_ready_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    timings = facts.timings
    flapped = sorted(
        {
            e.name
            for e in facts.timeline.of("Pod", since=probe.started, until=probe.ended)
            if _owned(e.state, facts.deployment)
            and not e.state.get("ready")
            and not e.state.get("deleting")
        }
    )
    if flapped and not _not_ready_troubles(facts, probe.ended):
        return (
            f"{facts.deployment} did not stay fully Ready for "
            f"{timings.leaves_endpoints_within} within {timings.ready_within.seconds:g}s: "
            f"{', '.join(flapped)} kept turning NotReady"
        )
    return not_ready_sentence(facts, probe.ended, within=timings.ready_within)


def readiness_reason(container: Mapping[str, Any] | None, within: Timing) -> str:
    """Why a partitioned pod's readiness probe did not take it out of the endpoints."""
    container = container or {}
    probe = container.get("readinessProbe")
    name = container.get("name") or "its container"
    if not probe:
        return f"its container {name} has no readiness probe, so nothing takes it out"
    if "exec" in probe:
        command = " ".join(str(a) for a in (probe["exec"] or {}).get("command") or [])
        dials = " that dials localhost" if _DIALS_LOCALHOST.search(command) else ""
        return (
            f"its readiness probe is an exec probe{dials} (`{command}`), which runs inside "
            "the pod, where the partition leaves localhost reachable"
        )
    host = (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("host")
    if host in LOOPBACK:
        return (
            f"its readiness probe dials {host}, which the kubelet finds on the node, not "
            "through the pod's network"
        )
    period, failures = probe.get("periodSeconds", 10), probe.get("failureThreshold", 3)
    needs = period * failures
    if needs > within.seconds:
        return (
            f"its readiness probe turns it NotReady only after {failures} failures {period}s "
            f"apart (about {needs:g}s), later than {within}"
        )
    return (
        f"its readiness probe should have failed within about {needs:g}s, yet the kubelet "
        f"kept it Ready for {within}"
    )


def partition_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    cut_off = [
        output["pod"]
        for func, output in facts.actions
        if func == "partition_one_pod" and isinstance(output, Mapping) and output.get("pod")
    ]
    within = facts.timings.leaves_endpoints_within
    if not cut_off:
        return "no pod was partitioned when the probe looked: the partition action cut off none"
    pod = cut_off[-1]
    state = facts.timeline.states_at("Pod", probe.ended).get(pod) or {}
    if state.get("ready"):
        containers = {c.get("name"): c for c in facts.containers}
        container = containers.get(facts.container) or next(iter(facts.containers), None)
        return f"the pod stayed Ready while partitioned: {readiness_reason(container, within)}"
    if pod in facts.timeline.ready_endpoints(probe.ended):
        return (
            f"the partitioned pod {pod} turned NotReady, but the Service's endpoints still "
            f"listed it after {within}: the EndpointSlice controller lagged"
        )
    return f"the partitioned pod {pod} left the endpoints only as the {within} it had ran out"


def _budget_limit(spec: Mapping[str, Any]) -> str:
    if "minAvailable" in spec:
        return f"minAvailable {spec['minAvailable']}"
    return f"maxUnavailable {spec.get('maxUnavailable')}"


def _allows_every_eviction(spec: Mapping[str, Any], replicas: int) -> bool:
    def count(value: Any) -> float:
        text = str(value)
        return replicas * float(text[:-1]) / 100 if text.endswith("%") else float(text)

    if "minAvailable" in spec:
        return count(spec["minAvailable"]) <= 0
    return "maxUnavailable" in spec and count(spec["maxUnavailable"]) >= max(replicas, 1)


def _matches(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = expression.get("values") or []
    if operator == "In":
        return labels.get(key) in values
    if operator == "NotIn":
        return labels.get(key) not in values
    if operator == "Exists":
        return key in labels
    return operator == "DoesNotExist" and key not in labels


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects `labels`; an empty
    selector selects everything, a missing one nothing (a PodDisruptionBudget's rules)."""
    if selector is None:
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and all(
        _matches(e, labels) for e in selector.get("matchExpressions") or []
    )


def drain_sentence(facts: RunFacts, at: float) -> str:
    """Why a drain left no replica Ready: the budget that should have held it back."""
    budgets = [b for b in facts.pdbs if selects((b.get("spec") or {}).get("selector"),
                                                facts.pod_labels)]  # fmt: skip
    if not budgets:
        return "the drain evicted every replica: no PodDisruptionBudget selects the Deployment"
    for budget in budgets:
        spec = budget.get("spec") or {}
        if _allows_every_eviction(spec, facts.replicas):
            return (
                "the drain evicted every replica: the PodDisruptionBudget "
                f"{budget['metadata']['name']} allows it ({_budget_limit(spec)})"
            )
    budget = budgets[0]
    return (
        f"no replica of {facts.deployment} was Ready after the drain, though the "
        f"PodDisruptionBudget {budget['metadata']['name']} "
        f"({_budget_limit(budget.get('spec') or {})}) selects them"
        + _listing(_not_ready_troubles(facts, at))
    )


def ready_pods_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    if not probe.output and any(func == "drain_node" for func, _ in facts.actions):
        return drain_sentence(facts, probe.ended)
    head = (
        f"no replica of {facts.deployment} was Ready"
        if not probe.output
        else f"{probe.output} replicas of {facts.deployment} were Ready, outside "
        f"{short_json(probe.tolerance)}"
    )
    return head + _listing(_not_ready_troubles(facts, probe.ended))


def restarts_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    before = facts.timeline.states_at("Pod", facts.started)
    items = []
    for pod, state in sorted(_pods(facts, probe.ended).items()):
        earlier = {
            c.get("name"): c.get("restarts", 0)
            for c in (before.get(pod) or {}).get("containers") or []
        }
        for c in state.get("containers") or []:
            times = c.get("restarts", 0) - earlier.get(c.get("name"), 0)
            if times > 0:
                last = facts.terminations.get(f"{pod}/{c.get('name')}")
                items.append(f"{pod}'s {c.get('name')} {times}x" + (f" ({last})" if last else ""))
    return (
        f"containers of {facts.deployment} restarted {short_json(probe.output)} time(s) since "
        f"the experiment began, outside {short_json(probe.tolerance)}" + _listing(items)
    )


def answers_sentence(facts: RunFacts, probe: ProbeRun) -> str:
    timeout = facts.timings.request_timeout
    if probe.arguments.get("timeout_s") is not None:
        timeout = Timing(float(probe.arguments["timeout_s"]), "the probe's timeout_s")
    head = (
        f"the service did not answer {probe.arguments.get('path') or facts.load_path} with a 2xx "
        f"within {timeout}"
    )
    pods = _pods(facts, probe.ended)
    serving = facts.timeline.ready_endpoints(probe.ended) & set(pods)
    if not serving:
        return (
            head
            + f", and no replica of {facts.deployment} was in the Service's endpoints"
            + _listing(_not_ready_troubles(facts, probe.ended))
        )
    head += f", though {len(serving)} of {len(pods)} replicas were in its endpoints"
    before = facts.timeline.ready_endpoints(probe.started - timeout.seconds)
    if gone := sorted(before - facts.timeline.ready_endpoints(probe.started)):
        head += (
            f": {', '.join(gone)} had left them just before, and the node's proxy may still "
            "have routed the request there"
        )
    return head


# Explanations of the harness's probes by function name; others get `probe_sentence`'s own.
PROBE_SENTENCES: dict[str, Callable[[RunFacts, ProbeRun], str]] = {
    "deployment_ready": deployment_ready_sentence,
    "deployment_ready_again": ready_again_sentence,
    "deployment_stays_ready": stays_ready_sentence,
    "partitioned_pod_left_endpoints": partition_sentence,
    "ready_pods": ready_pods_sentence,
    "container_restarts": restarts_sentence,
    "service_answers": answers_sentence,
}


def _error(entry: Mapping[str, Any]) -> str:
    return (entry.get("exception") or ["it failed"])[-1].strip()


def probe_sentence(facts: RunFacts, entry: Mapping[str, Any]) -> str:
    """A probe that failed or returned what its tolerance does not allow."""
    probe = ProbeRun.of(entry, default_start=facts.started)
    if entry.get("status") != "succeeded":
        return f"the probe {probe.name} could not run: {_error(entry)}"
    if probe.func in PROBE_SENTENCES:
        return PROBE_SENTENCES[probe.func](facts, probe)
    return (
        f"the probe {probe.name} returned {short_json(probe.output)}, outside its tolerance "
        f"{short_json(probe.tolerance)}"
    )


def action_sentence(entry: Mapping[str, Any]) -> str:
    activity = entry.get("activity") or {}
    return f"the {activity.get('type', 'activity')} {activity.get('name')} failed: {_error(entry)}"


def _share(value: float) -> str:
    return f"{value * 100:.3g}%"


def slo_sentence(
    verdict: Verdict, load: LoadResult, source: str, why_failed: str | None = None
) -> str:
    """An SLO limit the run missed, with what the load record says about it.

    `source` names who set the limit ("the experiment allows (max_error_rate)");
    `why_failed`, what in the manifests makes requests fail under faults (one replica).
    The verdict's own note is not repeated: `verdicts.explained` puts it after the sentence.
    """
    what = verdict.name.rpartition(": ")[2]
    unjudged = f"the {what} cannot be judged"
    if verdict.status == "inconclusive":
        return unjudged if verdict.note else f"{unjudged}: the load generator saturated"
    if verdict.measured is None:
        return unjudged if verdict.note else f"{unjudged}: nothing was measured"
    if what.endswith("error rate"):
        failed = load.failures
        sentence = (
            f"{len(failed)} of {load.requests} requests failed ({_share(verdict.measured)}), "
            f"over the {_share(verdict.limit)} {source}"
        )
        errors = Counter(f.error for f in failed).most_common(1)
        pods = [pod for pod, _ in Counter(f.pod for f in failed if f.pod).most_common(2)]
        if errors:
            sentence += f": most with {errors[0][0]} ({errors[0][1]})"
            sentence += f", sent to {' and '.join(pods)}" if pods else ""
        return sentence + (f"{JOIN}{why_failed}" if why_failed else "")
    if what.endswith("latency"):
        slow = [f.end - f.t for f in load.failures if (f.end - f.t) * 1000 > verdict.limit]
        sentence = (
            f"the {what} was {verdict.measured / 1000:.3g}s, over the "
            f"{verdict.limit / 1000:g}s {source}"
        )
        if slow:
            sentence += (
                f": {len(slow)} failed requests alone took longer (up to {max(slow):.1f}s, "
                "waiting for the load's timeout)"
            )
        return sentence
    if what.endswith("throughput"):
        return (
            f"the load reached {verdict.measured:.1f} req/s, under the {verdict.limit:g} req/s "
            f"{source}"
        )
    return f"the {what} missed its limit: {verdict}"


SLO_FIELDS = {
    "error rate": ("max_error_rate", "error_rate"),
    "p95 latency": ("max_p95_ms", "p95"),
    "p99 latency": ("max_p99_ms", "p99"),
    "throughput": ("min_rps", "min_rps"),
}


def slo_source(what: str, overridden: Iterable[str]) -> str:
    """Who set the limit of an SLO verdict named `what`: the experiment or the spec."""
    attribute, key = SLO_FIELDS.get(what, ("", what))
    if attribute in set(overridden):
        name = attribute if attribute == "max_error_rate" else f"slo.{key}"
        return f"the experiment allows ({name})"
    return f"the spec's slo allows ({key})"


def pending_sentence(entry: Injected) -> str:
    if entry.fault == NODE_ACTIONS:
        return (
            "the experiment's own node actions left nodes cordoned (the harness uncordoned "
            "them afterwards): add a chaosk8s uncordon_node rollback"
        )
    return (
        f"the rollbacks left {entry.describe()} in place (the harness reverted it afterwards): "
        "add a revert_faults rollback"
    )


def leftover_sentence(line: str) -> str:
    return f"{line} was still there after the final revert"


def duration_sentence(took: float, timeout_s: float) -> str:
    return (
        f"the run took {took:.0f}s, longer than the experiment's timeout_s of {timeout_s:g}s, "
        "so the load (sized to it) may have ended before the run did"
    )


def completion_sentence(journal: Mapping[str, Any]) -> str:
    status = journal.get("status")
    before = (journal.get("steady_states") or {}).get("before") or {}
    if status == "failed" and not before.get("steady_state_met", True):
        return "the steady state did not hold before the fault, so the method never ran"
    return f"chaoslib ended the run with status {status!r}"
