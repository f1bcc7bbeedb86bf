"""Chaos Toolkit experiments run by the harness: validated first, run under load, judged.

An experiment file is a standard Chaos Toolkit experiment (JSON or YAML). The harness adds
three things around `chaoslib`'s own run:

- before anything runs, chaoslib's validation plus a guard on what each activity does: an
  argument that names a namespace must be the literal `${harness_namespace}`, and an activity
  that reaches past the test namespace whatever its arguments (chaostoolkit-kubernetes's
  cluster and node actions, `process` and `http` activities, Python from other modules) runs
  only when the experiment lists it under `allow_beyond_namespace` (and, on an `existing`
  cluster, only with --allow-chaos-on-existing);
- while it runs, the service's steady load (from before the hypothesis until after the
  rollbacks), the configuration keys the harness activities read (`harness_namespace`,
  `harness_base_url`, ..., the spec's times its probes wait by, and the service's pods as the
  experiment began), and chaostoolkit-kubernetes pointed at the cluster's kubeconfig. The
  files declare none of these keys, so they validate anywhere and name no service;
- afterwards, the scenarios' verdicts (harness.chaos.verdicts): the run completed, the steady
  state held before and after, no activity failed, the rollbacks reverted the faults and
  nothing of them is left, the service recovered, and the availability SLO held over the
  whole run. Each failed one says in a sentence what broke and why, and the first such
  sentence heads the failure and summary.txt. Pending faults of the namespace are always
  reverted at the end, also on failure or Ctrl-C.

Per-experiment settings live in a Chaos Toolkit extension:

    extensions:
      - name: kube-harness
        service: demo           # default: the spec's first (--experiment-service overrides)
        max_error_rate: 10%     # default: the service's SLO
        slo: {p99: 20s}         # other limits of the service's SLO this fault may exceed
        warm_up_s: 5            # load before the steady-state hypothesis
        settle_s: 5             # load kept after the rollbacks
        recover_within_s: 60    # Ready again after a fault (default: the spec's
                                #   self_healing.ready_within)
        timeout_s: 300          # longest the run may take (the load is sized to cover it)
        may_fail: [drain-node]  # activities whose failure is an expected outcome
        allow_beyond_namespace: [cordon-all]  # activities that may act past the test
                                #   namespace (on an existing cluster: with the opt-in)
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ChaosException
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.extension import get_extension
from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid
from chaoslib.run import RunEventHandler
from kubernetes import client
from kubernetes.config import kube_config

from harness.assertions import Check
from harness.chaos.actions import ability_needed
from harness.chaos.explain import (
    duration_sentence,
    leftover_sentence,
    not_ready_sentence,
    pending_sentence,
)
from harness.chaos.facts import Timings, collect_facts, short_json
from harness.chaos.faults import (
    Target,
    cordoned_since,
    hold_node_schedulability,
    leftovers,
    revert_all,
)
from harness.chaos.ledger import Ledger
from harness.chaos.probes import (
    LEAVES_ENDPOINTS_WITHIN,
    PODS_AT_START,
    READY_WITHIN,
    REQUEST_TIMEOUT,
    pods_at_start,
)
from harness.chaos.verdicts import (
    RUN_KINDS,
    ExperimentEvidence,
    completion_check,
    explained,
    journal_checks,
    ready_again,
    sentence_check,
    slo_verdicts,
)
from harness.cluster.provider import ClusterProvider, lacks
from harness.deploy import Deployed
from harness.errors import InvalidConfiguration
from harness.kube import Kube
from harness.load import SLO, Load, Verdict
from harness.observe import TimelineRecorder
from harness.scenario import (
    steady_load,
    workload_of,
)
from harness.spec import ResilienceSpec, ServiceSpec, parse_fraction, parse_seconds
from harness.user_files import read_json, read_yaml


def unsupported_activities(experiment: Mapping[str, Any], cluster: ClusterProvider) -> list[str]:
    """The experiment's activities that `cluster`'s provider cannot carry out, each with why."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    activities = [
        *hypothesis.get("probes", []),
        *experiment.get("method", []),
        *experiment.get("rollbacks", []),
    ]
    found = []
    for activity in activities:
        provider = activity.get("provider") or {}
        if provider.get("module") != "harness.chaos.actions":
            continue
        ability = ability_needed(provider.get("func", ""))
        if ability and (cannot := lacks(cluster, ability)):
            found.append(f"{activity.get('name')} ({cannot})")
    return found


EXTENSION = "kube-harness"
NAMESPACE_ARGUMENTS = ("ns", "namespace", "pod_namespace")
# chaostoolkit-kubernetes's Chaos Mesh actions take lists of namespaces besides `ns`.
NAMESPACE_LIST_ARGUMENTS = ("namespaces_selectors", "target_namespaces_selectors")
NAMESPACE_VALUE = "${harness_namespace}"
# Modules whose activities act only where the harness's configuration points them (its test
# namespace, the ledger, the --allow-chaos-on-existing opt-in): every other module's are judged
# by what they can reach.
CONTAINED_MODULES = ("harness.chaos.actions", "harness.chaos.probes")
CHAOSK8S = "chaosk8s"
CHAOSK8S_NODE_ACTIONS = "chaosk8s.node.actions"
# What the harness puts into every experiment's configuration (harness.chaos.actions and
# harness.chaos.probes build their target from these).
CONFIGURATION_KEYS = (
    "harness_kubeconfig",
    "harness_cluster_provider",
    "harness_cluster_name",
    "harness_namespace",
    "harness_deployment",
    "harness_selector",
    "harness_base_url",
    "harness_load_path",
    "harness_container",
    "harness_allow_chaos",
    READY_WITHIN,
    LEAVES_ENDPOINTS_WITHIN,
    REQUEST_TIMEOUT,
    PODS_AT_START,
)
# Rollbacks run even when the hypothesis failed: they are how an experiment reverts.
RUN_SETTINGS: dict[str, Any] = {"runtime": {"rollbacks": {"strategy": "always"}}}


class InvalidExperiment(InvalidConfiguration):
    """An experiment file that must not run: unreadable, invalid, or reaching outside the
    harness's namespace."""


@dataclass(frozen=True)
class HarnessSettings:
    """The experiment's `kube-harness` extension: which service, and how the run is judged."""

    service: str | None = None
    max_error_rate: float | None = None
    slo: Mapping[str, float] = field(default_factory=dict)
    warm_up_s: float = 5.0
    settle_s: float = 5.0
    recover_within_s: float | None = None
    timeout_s: float = 300.0
    may_fail: tuple[str, ...] = ()
    allow_beyond_namespace: tuple[str, ...] = ()

    @property
    def slo_overrides(self) -> set[str]:
        """The SLO fields this experiment sets in place of the service's."""
        return set(self.slo) | ({"max_error_rate"} if self.max_error_rate is not None else set())

    def judged_slo(self, service_slo: SLO) -> SLO:
        """The service's SLO with this experiment's limits in place of its own."""
        changes = dict(self.slo)
        if self.max_error_rate is not None:
            changes["max_error_rate"] = self.max_error_rate
        return replace(service_slo, **changes)


def load_experiment(path: Path) -> dict[str, Any]:
    """Read an experiment file (`.json`, `.yaml` or `.yml`).

    Raises:
        InvalidExperiment: the file is missing, not parseable, or not a mapping.
    """
    read = read_json if path.suffix == ".json" else read_yaml
    try:
        data = read(path, "experiment", fix="give the path of a Chaos Toolkit experiment file")
    except InvalidConfiguration as exc:
        raise InvalidExperiment(exc.message, fix=exc.fix) from None
    if not isinstance(data, dict):
        raise InvalidExperiment(
            f"experiment {path}: must be a mapping, not {type(data).__name__}",
            fix="see https://chaostoolkit.org/reference/api/experiment/",
        )
    return data


def validate_experiment(experiment: Mapping[str, Any], path: Path) -> HarnessSettings:
    """Refuse an experiment before anything runs; return its harness settings.

    Checks chaoslib's own validation (which also imports every Python activity and binds its
    arguments), the tolerances of method probes (the harness judges them), the `kube-harness`
    extension, and the namespace guard.

    Raises:
        InvalidExperiment: naming the file and the problem (chaoslib's message as is).

    Example:
        >>> path = Path("scenarios/experiments/pod-kill-under-load.yaml")
        >>> validate_experiment(load_experiment(path), path).max_error_rate   # doctest: +SKIP
        0.0
    """
    problems = structure_problems(experiment)
    if problems:
        raise InvalidExperiment(
            f"experiment {path}: " + "; ".join(problems),
            fix="see https://chaostoolkit.org/reference/api/experiment/",
        )
    placeholders = dict.fromkeys(CONFIGURATION_KEYS, "(set by the harness)")
    try:
        ensure_experiment_is_valid(with_configuration(experiment, placeholders))
        for where, activity in _activities(experiment):
            if where == "method" and "tolerance" in activity:
                ensure_hypothesis_tolerance_is_valid(activity["tolerance"])
    except ChaosException as exc:
        raise InvalidExperiment(
            f"experiment {path}: {exc}",
            fix="correct the experiment (https://chaostoolkit.org/reference/api/experiment/)",
        ) from None
    settings = harness_settings(experiment, source=str(path))
    names = {activity.get("name") for _, activity in _activities(experiment)}
    for key, listed in (
        ("may_fail", settings.may_fail),
        ("allow_beyond_namespace", settings.allow_beyond_namespace),
    ):
        unknown = [name for name in listed if name not in names]
        if unknown:
            raise InvalidExperiment(
                f"experiment {path}: extension {EXTENSION}: {key} names no activity: "
                + ", ".join(unknown),
                fix=f"use names of its activities: {', '.join(sorted(map(str, names)))}",
            )
    problems = namespace_problems(experiment)
    if problems:
        raise InvalidExperiment(
            f"experiment {path} could reach beyond its test namespace:\n"
            + "\n".join(f"  - {p}" for p in problems),
            fix=f"pass the namespace as the literal {NAMESPACE_VALUE}",
        )
    unlisted = [
        f"{where}: {name!r} {reach}"
        for where, name, reach in beyond_namespace(experiment)
        if name not in settings.allow_beyond_namespace
    ]
    if unlisted:
        raise InvalidExperiment(
            f"experiment {path} has activities that act beyond its test namespace:\n"
            + "\n".join(f"  - {u}" for u in unlisted),
            fix=f"if that is intended, list them under the {EXTENSION} extension's "
            "allow_beyond_namespace (on an existing cluster the run also needs "
            "--allow-chaos-on-existing)",
        )
    return settings


def structure_problems(experiment: Mapping[str, Any]) -> list[str]:
    """The parts whose type is wrong (chaoslib assumes them and fails with a traceback)."""
    problems = []
    for key, kind in (
        ("steady-state-hypothesis", dict),
        ("method", list),
        ("rollbacks", list),
        ("extensions", list),
        ("configuration", dict),
        ("secrets", dict),
    ):
        value = experiment.get(key)
        if value is not None and not isinstance(value, kind):
            problems.append(f"{key} must be a {_TYPE_WORDS[kind]}, not {type(value).__name__}")
        elif isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            problems.append(f"{key} must be a list of mappings (activities or extensions)")
    hypothesis = experiment.get("steady-state-hypothesis")
    if isinstance(hypothesis, dict):
        probes = hypothesis.get("probes")
        if probes is not None and not (
            isinstance(probes, list) and all(isinstance(p, dict) for p in probes)
        ):
            problems.append("steady-state-hypothesis: probes must be a list of mappings")
    if not problems and (
        "controls" in experiment or any("controls" in a for _, a in _activities(experiment))
    ):
        problems.append(
            "controls run Python around every activity, which the harness cannot confine: "
            "remove them (the harness records the run's timeline and journal itself)"
        )
    return problems


_TYPE_WORDS = {dict: "mapping", list: "list"}


def harness_settings(
    experiment: Mapping[str, Any], *, source: str = "experiment"
) -> HarnessSettings:
    """Read the `kube-harness` extension (defaults when there is none).

    Raises:
        InvalidExperiment: an unknown key or a value that cannot be read, naming `source`.
    """
    raw = dict(get_extension(experiment, EXTENSION) or {})
    raw.pop("name", None)
    parsers = {
        "service": _service_name,
        "max_error_rate": parse_fraction,
        "slo": _slo_limits,
        "warm_up_s": _seconds_or_zero,
        "settle_s": _seconds_or_zero,
        "recover_within_s": parse_seconds,
        "timeout_s": parse_seconds,
        "may_fail": _names,
        "allow_beyond_namespace": _names,
    }
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in parsers:
            raise InvalidExperiment(
                f"{source}: extension {EXTENSION}: unknown key {key!r}",
                fix=f"use only {', '.join(parsers)}",
            )
        try:
            values[key] = parsers[key](value)
        except (TypeError, ValueError) as exc:
            raise InvalidExperiment(
                f"{source}: extension {EXTENSION}: {key}: {exc}",
                fix="e.g. max_error_rate: 1%, slo: {p99: 5s}, settle_s: 5, may_fail: [drain-node]",
            ) from None
    return HarnessSettings(**values)


def _slo_limits(raw: Any) -> dict[str, float]:
    if isinstance(raw, Mapping) and {"error_rate", "endpoints"} & set(raw):
        raise ValueError("p95, p99 and min_rps only (the error rate is max_error_rate)")
    try:
        limits = SLO.from_mapping(raw, source="limits")
    except InvalidConfiguration as exc:
        raise ValueError(exc.message) from None
    return {k: v for k, v in vars(limits).items() if v is not None and k != "endpoints"}


def _service_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"must name a service of the resilience spec, not {raw!r}")
    return raw


def _seconds_or_zero(raw: Any) -> float:
    return 0.0 if raw in (0, "0", "0s") else parse_seconds(raw)


def _names(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(n, str) and n for n in raw):
        raise ValueError(f"must be a list of activity names, not {raw!r}")
    return tuple(raw)


def _activities(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every activity defined in the experiment (references excepted), with where it is."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    for where, activities in (
        ("steady-state-hypothesis", hypothesis.get("probes") or []),
        ("method", experiment.get("method") or []),
        ("rollbacks", experiment.get("rollbacks") or []),
    ):
        for activity in activities:
            if "ref" not in activity:
                yield where, activity


def namespace_problems(experiment: Mapping[str, Any]) -> list[str]:
    """Activities whose arguments could point them outside `${harness_namespace}`.

    An argument named like a namespace must be the literal placeholder (a list of namespaces,
    only the placeholder); a Python activity that has such a parameter must pass it
    (chaostoolkit-kubernetes defaults to `default`).
    """
    problems = []
    for where, activity in _activities(experiment):
        provider = activity.get("provider") or {}
        arguments = provider.get("arguments") or {}
        name = f"{where}: {activity.get('name')!r}"
        for key in NAMESPACE_ARGUMENTS:
            if key in arguments and arguments[key] != NAMESPACE_VALUE:
                problems.append(f"{name} sets {key}={arguments[key]!r}, not {NAMESPACE_VALUE}")
        for key in NAMESPACE_LIST_ARGUMENTS:
            if arguments.get(key) not in (None, [], [NAMESPACE_VALUE], NAMESPACE_VALUE):
                problems.append(
                    f"{name} sets {key}={arguments[key]!r}, not [{NAMESPACE_VALUE}] or nothing"
                )
        if provider.get("type") == "python":
            for key, parameter in _parameters(provider).items():
                if key in NAMESPACE_ARGUMENTS and key not in arguments:
                    problems.append(
                        f"{name} leaves {key} at its default {parameter.default!r}; "
                        f"pass {key}: {NAMESPACE_VALUE}"
                    )
    return problems


def beyond_namespace(experiment: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(part, activity name, what it reaches) for each activity that acts past the test
    namespace whatever its arguments say.

    chaostoolkit-kubernetes's probes only read, and its other activities with a namespace
    parameter are held to it by `namespace_problems`; its node actions and those without a
    namespace act on the whole cluster. `process`, `http` and Python from other modules can
    do anything the machine can.
    """
    for where, activity in _activities(experiment):
        provider = activity.get("provider") or {}
        module, func = provider.get("module", ""), provider.get("func", "")
        kind = provider.get("type")
        name = str(activity.get("name"))
        if kind == "process":
            yield where, name, f"runs the program {provider.get('path')!r} on this machine"
        elif kind == "http":
            yield where, name, f"sends a request to {provider.get('url')!r}"
        elif kind != "python" or module in CONTAINED_MODULES:
            continue
        elif module.split(".")[0] != CHAOSK8S:
            yield where, name, f"runs Python of {module}, which the harness cannot confine"
        elif module.split(".")[-1] == "probes":
            continue
        elif ".node." in f"{module}.":
            yield where, name, f"changes nodes, which every namespace shares ({module}.{func})"
        elif not set(_parameters(provider)) & {*NAMESPACE_ARGUMENTS, *NAMESPACE_LIST_ARGUMENTS}:
            yield where, name, f"acts on the whole cluster ({module}.{func} has no namespace)"


def changes_nodes(experiment: Mapping[str, Any]) -> bool:
    """Whether the experiment runs chaostoolkit-kubernetes's node actions (cordon, drain)."""
    return any(
        (activity.get("provider") or {}).get("module") == CHAOSK8S_NODE_ACTIONS
        for _, activity in _activities(experiment)
    )


def refuse_beyond_namespace(settings: HarnessSettings, cluster: ClusterProvider) -> None:
    """Refuse an experiment whose activities act past its namespace on a cluster that does
    not allow chaos (an `existing` one without --allow-chaos-on-existing).

    Raises:
        InvalidExperiment: naming the activities and the opt-in.
    """
    if settings.allow_beyond_namespace and not cluster.capabilities.chaos_allowed:
        raise InvalidExperiment(
            f"{', '.join(settings.allow_beyond_namespace)} act beyond the test namespace, "
            f"which this {cluster.name} cluster does not allow",
            fix="pass --allow-chaos-on-existing to opt in, or run on a cluster the harness "
            "creates (local or kind)",
        )


def _parameters(provider: Mapping[str, Any]) -> Mapping[str, inspect.Parameter]:
    return _signature_parameters(provider["module"], provider["func"])


@functools.cache  # both guards ask for each activity's function
def _signature_parameters(module: str, func: str) -> Mapping[str, inspect.Parameter]:
    # chaoslib's validation has imported the module and found the function already.
    return inspect.signature(getattr(importlib.import_module(module), func)).parameters


def with_configuration(experiment: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `experiment` whose configuration has `values` (they win over the file's)."""
    copied = copy.deepcopy(dict(experiment))
    copied["configuration"] = {**(copied.get("configuration") or {}), **values}
    return copied


def harness_configuration(
    *,
    cluster: ClusterProvider,
    kube: Kube,
    deployed: Deployed,
    service: ServiceSpec,
    timings: Timings,
) -> dict[str, Any]:
    """The configuration keys the harness activities read, for one deployed service (all but
    `harness_pods_at_start`, taken as the experiment starts)."""
    spec = kube.apps.read_namespaced_deployment(service.deployment, deployed.namespace).spec
    labels = spec.selector.match_labels or {}
    return {
        "harness_kubeconfig": str(cluster.kubeconfig()),
        "harness_cluster_provider": cluster.name,
        "harness_cluster_name": cluster.options.name,
        "harness_namespace": deployed.namespace,
        "harness_deployment": service.deployment,
        "harness_selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "harness_base_url": deployed.base_url,
        "harness_load_path": service.load.path,
        "harness_container": service.container,
        "harness_allow_chaos": "true" if cluster.options.allow_chaos else "false",
        **timings.configuration(),
    }


@contextmanager
def chaosk8s_kubeconfig(kubeconfig: Path, context: str | None = None) -> Iterator[None]:
    """Point chaostoolkit-kubernetes at `kubeconfig` for the block, then put everything back.

    chaosk8s builds its clients with `config.load_kube_config()`, which reads `$KUBECONFIG`
    (else ~/.kube/config) and the kubernetes library's default location - fixed when the
    library was imported - and then replaces the library's process-wide default
    configuration. All of these are set for the block and restored after it. chaosk8s also
    turns TLS verification off unless KUBERNETES_VERIFY_SSL is set: it is set, so its clients
    check the API server against the cluster's CA like the harness's own.
    """
    saved_env = {
        key: os.environ.get(key)
        for key in ("KUBECONFIG", "KUBERNETES_CONTEXT", "KUBERNETES_VERIFY_SSL")
    }
    saved_location = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    missing = object()
    # chaosk8s sets `verify_ssl` and `debug` on the Configuration class itself.
    saved_class = {
        k: vars(client.Configuration).get(k, missing) for k in ("_default", "verify_ssl", "debug")
    }
    os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(kubeconfig)
    os.environ["KUBERNETES_VERIFY_SSL"] = "true"
    if context:
        os.environ["KUBERNETES_CONTEXT"] = context
    else:
        os.environ.pop("KUBERNETES_CONTEXT", None)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved_location
        for key, value in saved_class.items():
            if value is missing:
                if key in vars(client.Configuration):
                    delattr(client.Configuration, key)
            else:
                setattr(client.Configuration, key, value)


class TimelineMarks(RunEventHandler):
    """Puts the run's phases and activities on the test's timeline; it only records.

    `stopped_by_signal` says whether Ctrl-C or a signal ended the run: chaoslib swallows
    those into the journal's status.
    """

    def __init__(self, timeline: TimelineRecorder) -> None:
        self.timeline = timeline
        self.stopped_by_signal = False

    def _mark(self, label: str, **state: Any) -> None:
        self.timeline.mark(f"chaos: {label}", **state)

    def start_hypothesis_before(self, experiment: Any) -> None:
        self._mark("steady state before")

    def hypothesis_before_completed(self, experiment: Any, state: Any, journal: Any) -> None:
        self._mark("steady state before done", met=(state or {}).get("steady_state_met"))

    def start_method(self, experiment: Any) -> None:
        self._mark("method")

    def method_completed(self, experiment: Any, state: Any = None) -> None:
        self._mark("method done")

    def start_hypothesis_after(self, experiment: Any) -> None:
        self._mark("steady state after")

    def hypothesis_after_completed(self, experiment: Any, state: Any, journal: Any) -> None:
        self._mark("steady state after done", met=(state or {}).get("steady_state_met"))

    def start_rollbacks(self, experiment: Any) -> None:
        self._mark("rollbacks")

    def rollbacks_completed(self, experiment: Any, journal: Any) -> None:
        self._mark("rollbacks done")

    def start_activity(self, activity: Any) -> None:
        self._mark(f"{activity.get('type')} {activity.get('name')}")

    def activity_completed(self, activity: Any, run: Any) -> None:
        self._mark(
            f"{activity.get('type')} {activity.get('name')} {run.get('status')}",
            output=short_json(run.get("output")),
        )

    def signal_exit(self) -> None:
        self.stopped_by_signal = True


def run_under_load(
    experiment: Mapping[str, Any],
    *,
    cluster: ClusterProvider,
    kube: Kube,
    deployed: Deployed,
    service: ServiceSpec,
    load: Load,
    timeline: TimelineRecorder,
    report_dir: Path,
) -> ExperimentEvidence:
    """Run a validated experiment against a deployed service under its steady load.

    The load starts `warm_up_s` before the steady-state hypothesis and lasts until `settle_s`
    after the Deployment is Ready again following the rollbacks. The probes wait by the spec's
    times, and count restarts and replacements from the pods as the experiment starts.
    journal.json is written to `report_dir` (the timeline and the load record are already
    there). Every fault still pending in the namespace is reverted at the end, whatever
    happened.

    Returns:
        The evidence to judge (`harness.scenario.judge`), its failed verdicts explained.

    Raises:
        KeyboardInterrupt: the run was stopped by Ctrl-C or a signal (after the revert).
    """
    settings = harness_settings(experiment)
    refuse_beyond_namespace(settings, cluster)
    namespace = deployed.namespace
    timings = Timings.of(service, settings.recover_within_s)
    configuration = harness_configuration(
        cluster=cluster, kube=kube, deployed=deployed, service=service, timings=timings
    )
    marks = TimelineMarks(timeline)
    journal: dict[str, Any] = {}
    load_seconds = (
        settings.warm_up_s + settings.timeout_s + timings.ready_within.seconds + settings.settle_s
    )
    try:
        with (
            chaosk8s_kubeconfig(cluster.kubeconfig(), cluster.options.context),
            steady_load(load, service, deployed, seconds=load_seconds) as run,
        ):
            time.sleep(settings.warm_up_s)  # the baseline under full load is in the record
            configuration[PODS_AT_START] = pods_at_start(
                kube, namespace, configuration["harness_selector"]
            )
            started = timeline.mark("chaos: experiment", title=experiment.get("title")).t
            target = Target.of(cluster, kube, namespace, ledger=Ledger(cluster.options.name))
            # An experiment's own node actions leave no mark: what they change is held here
            # (and reverted with the rest); kept pending only if its rollbacks left a cordon.
            nodes = hold_node_schedulability(target) if changes_nodes(experiment) else None
            journal = run_experiment(
                with_configuration(experiment, configuration),
                settings=copy.deepcopy(RUN_SETTINGS),
                event_handlers=[marks],
            )
            ended = timeline.mark("chaos: experiment ended", status=journal.get("status")).t
            if nodes is not None and not cordoned_since(kube, nodes):
                target.ledger.remove(nodes.id)
            pending = target.ledger.pending(namespace=namespace)
            if not marks.stopped_by_signal:
                ready = ready_again(
                    kube,
                    namespace,
                    service.deployment,
                    since=ended,
                    within=timings.ready_within,
                )
                time.sleep(settings.settle_s)
        result = run.result()
        if not marks.stopped_by_signal:
            facts = collect_facts(
                kube,
                namespace,
                service,
                journal=journal,
                timeline=timeline.timeline(),
                timings=timings,
                started=started,
            )
    finally:
        revert_all(cluster, kube, namespace=namespace)
        if journal:
            (report_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str))
    if marks.stopped_by_signal:
        raise KeyboardInterrupt
    # The cluster is shared: other namespaces' faults are not this run's to answer for.
    left = leftovers(cluster, kube, namespace=namespace)
    evidence = ExperimentEvidence(
        f"chaos experiment {experiment.get('title')!r} on {service.name}",
        timeline.timeline(),
        loads=[result],
    )
    took = ended - started
    evidence.add(
        *journal_checks(
            journal, configuration, facts, may_fail=settings.may_fail, since=started, until=ended
        ),
        explained(
            ready,
            "after the rollbacks, "
            + not_ready_sentence(facts, ready.until, within=timings.ready_within, again=True),
        ),
        *slo_verdicts(
            settings.judged_slo(service.slo),
            result,
            overridden=settings.slo_overrides,
            what="whole chaos run",
            why_failed=workload_of(deployed, service).why_unavailable_during_replacement(),
        ),
        sentence_check(
            "faults still pending after the rollbacks",
            [pending_sentence(i) for i in pending],
            started,
            ended,
        ),
        sentence_check(
            "leftovers of its faults after the final revert",
            [leftover_sentence(line) for line in left],
            started,
            ended,
        ),
        Check(
            Verdict(
                "duration of the chaos run",
                took,
                settings.timeout_s,
                "s",
                "pass" if took <= settings.timeout_s else "fail",
                "" if took <= settings.timeout_s else duration_sentence(took, settings.timeout_s),
            ),
            started,
            ended,
            RUN_KINDS,
        ),
        completion_check(journal, started, ended),
    )
    evidence.measurements.update(
        {
            "chaos run: seconds": round(took, 2),
            "chaos run: failed requests": len(result.failures_between(started, ended)),
            "seconds to Ready after the rollbacks": ready.verdict.measured,
        }
    )
    return evidence


def experiment_service(
    spec: ResilienceSpec, settings: HarnessSettings, name: str | None = None
) -> ServiceSpec:
    """The service an experiment runs against: `name`, else its extension's, else the spec's
    first.

    Raises:
        InvalidSpec: the spec has no service of that name.
    """
    chosen = name or settings.service
    return spec.service(chosen) if chosen else spec.services[0]
