"""Drafting a resilience spec from a service's manifests: what `harness init PATH` writes.

The manifests (a kustomization, a Helm chart, one manifest file or a folder of them) are
rendered, and
for each Deployment the draft proposes the promises its own settings imply: the container
and port to load, HPA bounds and timings from its HorizontalPodAutoscaler, probe reaction
times from its probes, recovery and rollout durations from its replicas, strategy and
probes. Every derived value carries a YAML comment with its arithmetic; what the manifests
cannot support is left out with a comment saying why. The draft is a starting point to
review, not a verdict: TODO comments mark what only the service's owner can know.

Example:
    >>> write_draft(Path("manifests/overlays/ci"), Path("demo.spec.yaml"))  # doctest: +SKIP
    PosixPath('demo.spec.yaml')
"""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from harness.errors import InvalidConfiguration
from harness.helm import is_chart
from harness.render import Object, check_source, describe, is_kustomization, render
from harness.spec import API_VERSION, KIND
from harness.workload import ProbeTimings

DEFAULT_OUTPUT = Path("resilience.yaml")

# What Kubernetes assumes when the manifests leave a field out.
SCALE_DOWN_DEFAULTS = {"stabilizationWindowSeconds": 300, "selectPolicy": "Max"}
SCALE_DOWN_POLICIES = [{"type": "Percent", "value": 100, "periodSeconds": 15}]
PROGRESS_DEADLINE_DEFAULT = 600
TERMINATION_GRACE_DEFAULT = 30

# What the manifests cannot say, in seconds: generous, since a draft that fails on a healthy
# service teaches nothing.
ENDPOINTS_MARGIN_S = 5  # the endpoints controller and kube-proxy drop a pod that is not ready
RESTART_MARGIN_S = 10  # the kubelet kills the container and starts it again
POD_START_S = 30  # schedule a pod, start its containers, let the application start
METRICS_LAG_S = 60  # metrics-server scrapes, the CPU average moves
HPA_SYNC_S = 15  # the HPA controller's period
REPORT_MARGIN_S = 30  # a controller notices and reports


def write_draft(
    path: Path, out: Path = DEFAULT_OUTPUT, *, force: bool = False, kubectl: str = "kubectl"
) -> Path:
    """Write the draft spec for the manifests at `path` to `out`; nothing is written on error.

    Raises:
        InvalidConfiguration: `path` is missing or holds no manifests or no Deployment, the
            manifests do not render, or `out` exists and `force` is not set.
    """
    path, out = Path(path), Path(out)
    _check_input(path)
    _check_output(out, force=force)
    text = draft_spec(path, out, kubectl=kubectl)
    try:
        with out.open("w" if force else "x") as file:
            file.write(text)
    except FileExistsError:  # created since the check
        _check_output(out, force=False)
    return out


def draft_spec(path: Path, out: Path, *, kubectl: str = "kubectl") -> str:
    """The YAML text of the draft spec for the manifests at `path`, to be saved as `out`.

    Raises:
        InvalidConfiguration: as `write_draft`, except for the output file.
    """
    _check_input(path)
    objects = render(path, kubectl=kubectl)
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    if not deployments:
        found = ", ".join(describe(o) for o in objects[:5]) or "nothing"
        raise InvalidConfiguration(
            f"{path} holds no Deployment (found: {found})",
            fix="point at the manifests of a service: its Deployment, with its Service, "
            "HorizontalPodAutoscaler and PodDisruptionBudget",
        )
    manifests = Path(os.path.relpath(path.resolve(), out.resolve().parent)).as_posix()
    kind = "kustomization directory" if is_kustomization(path) else "manifests folder"
    kind = "manifest file" if path.is_file() else kind
    kind = "Helm chart, rendered with its default values" if is_chart(path) else kind
    y = _Yaml()
    y.comment(f"Draft resilience spec for {path}, written by `harness init`.")
    y.comment(
        "Each value is derived from the manifests; its comment shows how. Review them, settle "
        f"the TODOs, then run the scenarios with --resilience-spec={out}."
    )
    y.field("apiVersion", API_VERSION)
    y.field("kind", KIND)
    names: set[str] = set()
    with y.block("services"):
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            if name in names:
                name = f"{name}-{deployment['metadata'].get('namespace', 'default')}"
            names.add(name)
            with y.item():
                _service(
                    y, name, deployment, objects, (manifests, f"{kind}, relative to this file")
                )
    return y.text()


# --- input and output -----------------------------------------------------------------------


def _check_input(path: Path) -> None:
    if not path.exists():
        raise InvalidConfiguration(
            f"manifests {path} do not exist",
            fix="give a kustomization directory, a Helm chart (folder or .tgz), a manifest "
            "file, or a folder of manifest files (*.yaml, *.yml, *.json)",
        )
    check_source(path)  # a folder holds a kustomization or manifest files


def _check_output(out: Path, *, force: bool) -> None:
    if out.is_dir():
        raise InvalidConfiguration(
            f"output {out} is a folder", fix=f"name a file, e.g. -o {out / DEFAULT_OUTPUT}"
        )
    if out.exists() and not force:
        raise InvalidConfiguration(
            f"output {out} already exists",
            fix="pass --force to overwrite it, or name another file with -o",
        )
    if not out.parent.is_dir():
        raise InvalidConfiguration(
            f"folder {out.parent} for the output does not exist",
            fix="create it, or name a file in an existing folder with -o",
        )


# --- one service ------------------------------------------------------------------------------


def _service(
    y: _Yaml, name: str, deployment: Object, objects: list[Object], manifests: tuple[str, str]
) -> None:
    """One entry of `services:` for `deployment`, with what selects or targets its pods."""
    spec = deployment.get("spec") or {}
    template = spec.get("template") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    pod = template.get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        raise InvalidConfiguration(
            f"{describe(deployment)} has no containers", fix="fix the Deployment's pod template"
        )
    container, deployment_name = containers[0], deployment["metadata"]["name"]
    near = [o for o in objects if _namespace(o) == _namespace(deployment)]
    services = [
        o
        for o in near
        if o.get("kind") == "Service" and _matches((o.get("spec") or {}).get("selector"), labels)
    ]
    hpa = next((o for o in near if _targets(o, deployment)), None)
    replicas = spec.get("replicas", 1)
    if hpa is not None:
        replicas = max(replicas, (hpa.get("spec") or {}).get("minReplicas", 1))
    probes = {
        kind: ProbeTimings.of(container, kind) for kind in ("readiness", "liveness", "startup")
    }
    ready_s, ready_why = _ready_time(probes)

    y.field("name", name)
    y.field("manifests", manifests[0], manifests[1])
    y.field("deployment", deployment_name)
    others = ", ".join(c["name"] for c in containers[1:])
    y.field("container", container["name"], f"other containers: {others}" if others else "")
    _port(y, deployment_name, container, containers, services)
    with y.block("images", "versions the rollout scenarios move between"):
        y.field("current", container.get("image", ""), "as in the manifests")
        y.field("next", container.get("image", ""), "TODO: the next version to roll out")
    with y.block("load"):
        y.field("path", "/", "TODO: a cheap endpoint; steady load during faults and rollouts")
        y.field("users", 4)
        y.field("cpu_path", "/", "TODO: an endpoint that burns CPU, to drive the HPA")
        y.field("cpu_users", 6)
        y.field("rps", 4, "requests per second per user")
        y.field("timeout", "5s", "an unanswered request fails after this")
    with y.block("slo", "judged over every load run of every scenario"):
        y.field("error_rate", "0%")
        y.field("p95", "500ms")
        y.field("p99", "2s")
        y.field("min_rps", 5)
    y.comment(
        "admin (optional): how to make the service fail its probes or crash, as in "
        "scenarios/demo-service.spec.yaml; without it the probe scenarios are skipped."
    )
    with y.block("expect"):
        _disruption_budgets(y, deployment_name, near, labels, replicas)
        if hpa is None:
            y.comment(
                f"no HorizontalPodAutoscaler targets Deployment {deployment_name}: "
                "no hpa expectation"
            )
        else:
            _hpa(y, hpa, ready_s)
        with y.block("self_healing"):
            y.field(
                "ready_within",
                f"{POD_START_S + ready_s}s",
                f"{POD_START_S}s to start + {ready_why}",
            )
            y.field(
                "max_error_rate",
                "10%",
                "over the window after the fault: requests to the lost pod fail until it "
                "leaves the endpoints",
            )
        y.comment(
            "node_failure (multi-node clusters) is left out: add ready_elsewhere_within, "
            "max_error_rate and window to judge the loss of a node."
        )
        _probes(y, deployment_name, probes)
        _rollout(y, spec, pod, replicas, ready_s)


def _port(y: _Yaml, name: str, container: Object, containers: list, services: list) -> None:
    """`port`: a port of the Service the load goes through (one reaching `container` first),
    else a container port; the other candidates are listed in a comment."""
    found: dict[Any, tuple[bool, str]] = {}  # value -> (reaches `container`, description)
    if services:  # the Service harness.access.reach sends the load through
        service = next((s for s in services if s["spec"].get("type") == "NodePort"), services[0])
        via = f"Service {service['metadata']['name']} port"
        for entry in service["spec"].get("ports") or []:
            target = entry.get("targetPort", entry.get("port"))
            owner = next((c for c in containers if _port_of(c, target)), None)
            where = f"{owner['name']}:{target}" if owner else target
            value = entry.get("name") or entry.get("port")
            found.setdefault(value, (owner is container, f"{entry.get('port')} -> {where}"))
    else:
        via = "container port"
        for owner in containers:
            for entry in owner.get("ports") or []:
                value = entry.get("name") or entry.get("containerPort")
                text = f"{owner['name']}:{entry.get('containerPort')}"
                found.setdefault(value, (owner is container, text))
    if not found:
        y.comment(
            f"no Service selects Deployment {name} and its containers declare no port: "
            "TODO: add `port:`, the port number that takes the load"
        )
        return
    chosen = next((v for v, (reaches, _) in found.items() if reaches), next(iter(found)))
    y.field("port", chosen, f"{via} {chosen} ({found.pop(chosen)[1]}) takes the load")
    if found:
        y.comment(f"other choices: {'; '.join(f'{v} ({text})' for v, (_, text) in found.items())}")
    if len(services) > 1:
        y.comment(
            f"the load goes through {via.rsplit(' ', 1)[0]}, the first NodePort Service "
            f"selecting the pods, else the first one; also selecting them: "
            + ", ".join(s["metadata"]["name"] for s in services if s is not service)
        )


def _disruption_budgets(
    y: _Yaml, name: str, near: list[Object], labels: Mapping, replicas: int
) -> None:
    """A comment on each PodDisruptionBudget selecting the pods, or on there being none."""
    budgets = [
        o
        for o in near
        if o.get("kind") == "PodDisruptionBudget"
        and _matches((o.get("spec") or {}).get("selector"), labels, empty_is_all=True)
    ]
    if not budgets:
        y.comment(
            f"no PodDisruptionBudget selects the pods of Deployment {name}: a node drain may "
            f"evict every pod ({replicas}) at once; add one (e.g. minAvailable: 1) to keep "
            "serving through drains"
        )
    for budget in budgets:
        spec = budget.get("spec") or {}
        if "maxUnavailable" in spec:
            field, allowed = "maxUnavailable", _scaled(spec["maxUnavailable"], replicas)
        else:
            field = "minAvailable"
            allowed = replicas - _scaled(spec.get("minAvailable", 1), replicas)
        what = f"PodDisruptionBudget {budget['metadata']['name']} selects these pods ({field}: "
        what += f"{spec.get(field, 1)})"
        if allowed > 0:
            y.comment(f"{what}: a node drain evicts at most {allowed} of {replicas} at a time")
        else:
            y.comment(f"{what}: with {replicas} replica(s) no pod may be evicted, drains block")


def _hpa(y: _Yaml, hpa: Object, ready_s: int) -> None:
    """`expect.hpa` from the HPA's bounds and behavior, or a comment on why there is none."""
    spec = hpa.get("spec") or {}
    name = hpa["metadata"]["name"]
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas", 1)
    behavior = spec.get("behavior") or {}
    up, down = behavior.get("scaleUp"), behavior.get("scaleDown")
    reason = ""
    if not 1 <= low < high:
        reason = f"it keeps {low}..{high} replicas, nothing to scale"
    elif "Disabled" in ((up or {}).get("selectPolicy"), (down or {}).get("selectPolicy")):
        reason = "a scaling direction is Disabled"
    if reason:
        y.comment(f"HorizontalPodAutoscaler {name}: {reason}: no hpa expectation")
        return
    if not _scales_on_cpu(spec):
        y.comment(f"HPA {name} scales on other metrics than CPU: make load.cpu_path drive them")
    up_window = (up or {}).get("stabilizationWindowSeconds", 0)
    up_s = METRICS_LAG_S + HPA_SYNC_S + up_window + POD_START_S + ready_s
    down = {**SCALE_DOWN_DEFAULTS, "policies": SCALE_DOWN_POLICIES, **(down or {})}
    steps_s, steps_why = _scale_down_steps(down, high, low)
    down_window = down["stabilizationWindowSeconds"]
    down_s = METRICS_LAG_S + down_window + HPA_SYNC_S + steps_s + REPORT_MARGIN_S
    with y.block("hpa"):
        y.field("name", name)
        y.field("min", low)
        y.field("max", high)
        y.field("scale_up_to", min(low + 1, high), "min + 1: one scaling step proves it")
        source = "behavior.scaleUp" if up else "no behavior.scaleUp: Kubernetes' default"
        y.field(
            "scale_up_within",
            f"{up_s}s",
            f"{METRICS_LAG_S}s metrics lag + {HPA_SYNC_S}s HPA sync + {up_window}s "
            f"stabilization ({source}) + {POD_START_S}s pod start + {ready_s}s probes",
        )
        source = "behavior.scaleDown" if behavior.get("scaleDown") else "Kubernetes' default"
        y.field(
            "scale_down_within",
            f"{down_s}s",
            f"{METRICS_LAG_S}s metrics lag + {down_window}s stabilization ({source}) + "
            f"{HPA_SYNC_S}s HPA sync + {steps_why} + {REPORT_MARGIN_S}s margin",
        )
        y.field("max_direction_changes", 2, "scale-direction reversals allowed (flapping)")


def _scale_down_steps(down: Mapping, start: int, end: int) -> tuple[int, str]:
    """Seconds the scale-down policies take from `start` to `end` replicas after their first
    step, as the HPA limits each period (`Max` takes the policy allowing the most change)."""
    seconds, replicas = 0, start
    while replicas > end:
        options = []
        for policy in down.get("policies") or SCALE_DOWN_POLICIES:
            value = policy.get("value", 100)
            if policy.get("type") == "Pods":
                change = value
            else:
                change = replicas - math.ceil(replicas * (1 - value / 100))
            options.append((max(change, 1), policy.get("periodSeconds", 15)))
        change, period = min(options) if down.get("selectPolicy") == "Min" else max(options)
        replicas -= change
        seconds += period if replicas > end else 0
    return seconds, f"{seconds}s policy steps ({start} -> {end} replicas)"


def _probes(y: _Yaml, name: str, probes: Mapping[str, ProbeTimings | None]) -> None:
    """`expect.probes` from the container's probes, or a comment on the one missing."""
    readiness, liveness, startup = probes["readiness"], probes["liveness"], probes["startup"]
    if readiness is None or liveness is None:
        missing = [f"{kind}Probe" for kind in ("readiness", "liveness") if probes[kind] is None]
        y.comment(
            f"Deployment {name} has no {' and no '.join(missing)} on its container: "
            "no probes expectation"
        )
        return
    if startup is not None:
        allowance, how = startup.allowance(), f"the startup probe allows ({startup.explain()})"
    else:
        allowance = liveness.allowance()
        how = f"liveness allows a slow start (no startupProbe; {liveness.explain()})"
    with y.block("probes"):
        y.field(
            "readiness_leaves_endpoints_within",
            f"{readiness.fails_within() + ENDPOINTS_MARGIN_S}s",
            f"readiness {readiness.explain_failure()} + {ENDPOINTS_MARGIN_S}s margin",
        )
        y.field(
            "liveness_restarts_within",
            f"{liveness.fails_within() + RESTART_MARGIN_S}s",
            f"liveness {liveness.explain_failure()} + {RESTART_MARGIN_S}s margin",
        )
        y.field(
            "startup_delay",
            f"{max(1, allowance * 3 // 4)}s",
            f"3/4 of the {allowance}s {how}: a start this slow must survive",
        )


def _rollout(y: _Yaml, spec: Mapping, pod: Mapping, replicas: int, ready_s: int) -> None:
    """`expect.rollout` from the Deployment's strategy, replicas and progress deadline."""
    strategy = spec.get("strategy") or {}
    grace = pod.get("terminationGracePeriodSeconds", TERMINATION_GRACE_DEFAULT)
    per_pod = POD_START_S + ready_s
    if strategy.get("type") == "Recreate":
        batches, why = 1, "Recreate: 1 batch once every old pod stopped"
    else:
        rolling = strategy.get("rollingUpdate") or {}
        surge = _scaled(rolling.get("maxSurge", "25%"), replicas)
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        step = surge + unavailable or 1
        batches = math.ceil(replicas / step)
        why = f"{replicas} replicas, {step} at a time (maxSurge {surge} + maxUnavailable "
        why += f"{unavailable}): {batches} batches"
    deadline = spec.get("progressDeadlineSeconds")
    with y.block("rollout"):
        y.field(
            "complete_within",
            f"{batches * per_pod + grace + REPORT_MARGIN_S}s",
            f"{why} x ({POD_START_S}s pod start + {ready_s}s probes) + {grace}s termination "
            f"grace + {REPORT_MARGIN_S}s margin",
        )
        note = "a zero-downtime rollout fails no request"
        if strategy.get("type") == "Recreate":
            note = "Recreate stops every pod first, so requests fail: use RollingUpdate"
        y.field("max_failed_requests", 0, note)
        stuck = (deadline or PROGRESS_DEADLINE_DEFAULT) + REPORT_MARGIN_S
        if deadline is None:
            note = (
                f"no progressDeadlineSeconds: Kubernetes' {PROGRESS_DEADLINE_DEFAULT}s + "
                f"{REPORT_MARGIN_S}s to report it; set it lower (e.g. 60) to learn sooner"
            )
        else:
            note = f"progressDeadlineSeconds {deadline}s + {REPORT_MARGIN_S}s to report it"
            if deadline < per_pod:
                note += (
                    f"; a new pod may take {per_pod}s to be ready, so a slow start may be "
                    "reported stuck"
                )
        y.field("stuck_detected_within", f"{stuck}s", note)


# --- facts of the manifests -----------------------------------------------------------------


def _ready_time(probes: Mapping[str, ProbeTimings | None]) -> tuple[int, str]:
    """Seconds for a started container's probes to pass, with the arithmetic."""
    seconds, parts = 0, []
    if (startup := probes["startup"]) is not None:
        seconds += startup.initial + startup.period
        parts.append(f"startup {startup.initial}s + {startup.period}s")
    if (readiness := probes["readiness"]) is not None:
        seconds += readiness.initial + readiness.period * readiness.success
        parts.append(f"readiness {readiness.initial}s + {readiness.period}s x {readiness.success}")
    why = f"{seconds}s probes ({', '.join(parts)})" if parts else "0s: no readiness probe"
    return seconds, why


def _namespace(obj: Mapping) -> str | None:
    return (obj.get("metadata") or {}).get("namespace")


def _targets(obj: Mapping, deployment: Mapping) -> bool:
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    return (
        obj.get("kind") == "HorizontalPodAutoscaler"
        and ref.get("kind") == "Deployment"
        and ref.get("name") == deployment["metadata"]["name"]
    )


def _scales_on_cpu(spec: Mapping) -> bool:
    if "targetCPUUtilizationPercentage" in spec or not spec.get("metrics"):
        return True  # autoscaling/v1, or v2's default of 80% CPU
    return any(
        (m.get("resource") or m.get("containerResource") or {}).get("name") == "cpu"
        for m in spec["metrics"]
    )


def _matches(selector: Any, labels: Mapping, *, empty_is_all: bool = False) -> bool:
    """Whether a Service selector (a plain mapping) or a LabelSelector selects `labels`."""
    if not isinstance(selector, Mapping) or not selector:
        return isinstance(selector, Mapping) and empty_is_all
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        return all(labels.get(k) == v for k, v in selector.items())
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, values = expression.get("key"), expression.get("values") or []
        operator = expression.get("operator")
        if (
            (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and labels.get(key) in values)
            or (operator == "Exists" and key not in labels)
            or (operator == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def _port_of(container: Mapping, target: Any) -> bool:
    key = "name" if isinstance(target, str) else "containerPort"
    return any(entry.get(key) == target for entry in container.get("ports") or [])


def _scaled(value: Any, total: int, *, round_up: bool = True) -> int:
    """An int-or-percent field (`1`, `"25%"`) of `total`, rounded as Kubernetes does."""
    if isinstance(value, str) and value.endswith("%"):
        share = total * float(value[:-1]) / 100
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


# --- YAML with comments ---------------------------------------------------------------------

WIDTH = 99
NOTE_COLUMN = 40
PLAIN = re.compile(r"[\w./:@%?=&+~-]+")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}"
    text = str(value)
    if PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    return json.dumps(text)  # a JSON string is a double-quoted YAML scalar


class _Yaml:
    """Writes block-style YAML line by line, so that comments sit where a reader needs them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0
        self.dash = False  # the next field opens a list item

    def comment(self, text: str) -> None:
        pad = " " * (2 * self.depth - (2 if self.dash else 0))
        for line in textwrap.wrap(text, WIDTH - len(pad) - 2, break_on_hyphens=False):
            self.lines.append(f"{pad}# {line}")

    def field(self, key: str, value: Any = None, note: str = "") -> None:
        pad = " " * (2 * self.depth - 2) + "- " if self.dash else " " * (2 * self.depth)
        line = f"{pad}{key}:" + ("" if value is None else f" {_scalar(value)}")
        padded = line.ljust(max(NOTE_COLUMN, len(line) + 2))
        if note and len(padded) + len(note) + 2 <= WIDTH:
            line = f"{padded}# {note}"
        elif note:  # too long to share the line: above it
            self.comment(note)
        self.dash = False
        self.lines.append(line)

    @contextmanager
    def block(self, key: str, note: str = "") -> Iterator[None]:
        self.field(key, None, note)
        self.depth += 1
        yield
        self.depth -= 1

    @contextmanager
    def item(self) -> Iterator[None]:
        self.depth += 1
        self.dash = True
        yield
        self.depth -= 1

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"
