"""Chaos experiments: validation, the namespace guard, the extension, verdicts and the run's
bookkeeping with fakes; collection through pytester. The real runs are the experiment items
under scenarios/experiments/."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kubeconfigs import write_kubeconfig
from kubernetes import client

from harness.assertions import BehaviourViolation
from harness.chaos import experiment as ex
from harness.load import LoadResult
from harness.load.result import EndpointStats, Generator
from harness.observe import Entry, Timeline
from harness.spec import load_spec

NO_GENERATOR = Generator("host", ())

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "scenarios" / "demo-service.spec.yaml"
FAKES = "khx_fake_activities"
FAKE_ACTIVITIES = """
def answers(configuration=None):
    return True

def count(configuration=None):
    return 2

def act(configuration=None):
    return None

def boom(configuration=None):
    raise RuntimeError("boom")

def kill(label_selector=None, ns="default", configuration=None):
    return []

def evict(namespace, pod_namespace=None, configuration=None):
    return []
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A module of tiny activities, importable by chaoslib as `khx_fake_activities` and
    trusted as the harness's own are."""
    (tmp_path / f"{FAKES}.py").write_text(FAKE_ACTIVITIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(ex, "CONTAINED_MODULES", (*ex.CONTAINED_MODULES, FAKES))
    monkeypatch.delitem(sys.modules, FAKES, raising=False)
    yield FAKES
    sys.modules.pop(FAKES, None)


def activity(kind, func, name=None, **extra):
    arguments = extra.pop("arguments", None)
    provider = {"type": "python", "module": FAKES, "func": func}
    if arguments is not None:
        provider["arguments"] = arguments
    return {"type": kind, "name": name or func, "provider": provider, **extra}


def experiment(**changes):
    base = {
        "title": "fake",
        "description": "tiny stand-in activities",
        "steady-state-hypothesis": {
            "title": "answers",
            "probes": [activity("probe", "answers", tolerance=True)],
        },
        "method": [activity("action", "act")],
        "rollbacks": [activity("action", "act", name="undo")],
    }
    return base | changes


PATH = Path("scenarios/experiments/fake.yaml")


# ---------------------------------------------------------------- validation


def test_a_valid_experiment_gets_the_default_settings(fakes):
    assert ex.validate_experiment(experiment(), PATH) == ex.HarnessSettings()


def test_chaoslibs_message_and_the_file_name(fakes):
    with pytest.raises(ex.InvalidExperiment) as caught:
        ex.validate_experiment(experiment(title=""), PATH)
    assert str(PATH) in caught.value.message
    assert "experiment requires a title" in caught.value.message


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ({"module": "khx_no_such_module"}, "could not find Python module 'khx_no_such_module'"),
        ({"func": "missing"}, "does not expose a function called 'missing'"),
        ({"arguments": {"nope": 1}}, "argument 'nope' is not part of the function signature"),
    ],
)
def test_unknown_activities_are_refused(fakes, provider, message):
    act = activity("action", "act")
    act["provider"] |= provider
    with pytest.raises(ex.InvalidExperiment, match=message):
        ex.validate_experiment(experiment(method=[act]), PATH)


def test_configuration_the_harness_sets_need_not_be_in_the_environment(fakes, monkeypatch):
    monkeypatch.delenv("HARNESS_NAMESPACE", raising=False)
    declared = {"harness_namespace": {"type": "env", "key": "HARNESS_NAMESPACE"}}
    ex.validate_experiment(experiment(configuration=declared), PATH)
    other = {"mine": {"type": "env", "key": "KHX_UNSET_VARIABLE"}}
    with pytest.raises(ex.InvalidExperiment, match="KHX_UNSET_VARIABLE"):
        ex.validate_experiment(experiment(configuration=other), PATH)


def test_method_probe_tolerances_are_validated_too(fakes):
    probe = activity("probe", "count", tolerance={"type": "range", "range": ["a"]})
    with pytest.raises(ex.InvalidExperiment, match="range"):
        ex.validate_experiment(experiment(method=[probe]), PATH)


# ---------------------------------------------------------------- namespace guard


@pytest.mark.parametrize(
    ("func", "arguments", "problem"),
    [
        ("kill", {"ns": "${harness_namespace}"}, None),
        ("kill", {"ns": "default"}, "sets ns='default', not ${harness_namespace}"),
        ("kill", {"ns": "${other_namespace}"}, "sets ns='${other_namespace}'"),
        ("kill", {}, "leaves ns at its default 'default'; pass ns: ${harness_namespace}"),
        ("evict", {"namespace": "${harness_namespace}"}, "leaves pod_namespace at its default"),
        (
            "evict",
            {"namespace": "${harness_namespace}", "pod_namespace": "kube-system"},
            "sets pod_namespace='kube-system'",
        ),
        (
            "evict",
            {"namespace": "${harness_namespace}", "pod_namespace": "${harness_namespace}"},
            None,
        ),
    ],
)
def test_namespace_arguments_must_be_the_harness_namespace(fakes, func, arguments, problem):
    changed = experiment(rollbacks=[activity("action", func, name="victim", arguments=arguments)])
    if problem is None:
        ex.validate_experiment(changed, PATH)
        return
    with pytest.raises(ex.InvalidExperiment) as caught:
        ex.validate_experiment(changed, PATH)
    assert "could reach beyond its test namespace" in caught.value.message
    assert f"rollbacks: 'victim' {problem}" in caught.value.message
    assert caught.value.fix == "pass the namespace as the literal ${harness_namespace}"


def test_the_guard_looks_at_every_part_and_skips_references():
    bad = {"type": "action", "name": "x", "provider": {"arguments": {"namespace": "prod"}}}
    found = ex.namespace_problems(
        {
            "steady-state-hypothesis": {"probes": [bad]},
            "method": [bad, {"ref": "x"}],
            "rollbacks": [bad],
        }
    )
    assert [p.split(":")[0] for p in found] == ["steady-state-hypothesis", "method", "rollbacks"]


def chaosk8s(module, func, **arguments):
    provider = {"type": "python", "module": f"chaosk8s.{module}", "func": func}
    return {"type": "action", "name": "victim", "provider": provider | {"arguments": arguments}}


PROCESS = {"type": "action", "name": "victim", "provider": {"type": "process", "path": "true"}}
HTTP = {"type": "probe", "name": "victim", "provider": {"type": "http", "url": "http://x.test/"}}
FOREIGN_PYTHON = {
    "type": "action",
    "name": "victim",
    "provider": {"type": "python", "module": "json", "func": "dumps", "arguments": {"obj": 1}},
}


@pytest.mark.parametrize(
    ("victim", "reach"),
    [
        (
            chaosk8s("namespace.actions", "delete_namespace", name="kube-system"),
            "acts on the whole cluster",
        ),
        (chaosk8s("node.actions", "cordon_node", name="n1"), "changes nodes"),
        (
            chaosk8s(
                "node.actions", "drain_nodes", name="n1", pod_namespace="${harness_namespace}"
            ),
            "changes nodes",
        ),
        (
            chaosk8s("crd.actions", "apply_from_yaml", resource="x.yaml"),
            "acts on the whole cluster",
        ),
        (
            chaosk8s(
                "crd.actions",
                "delete_cluster_custom_object",
                group="g",
                version="v1",
                plural="p",
                name="n",
            ),
            "acts on the whole cluster",
        ),
        (PROCESS, "runs the program 'true' on this machine"),
        (HTTP, "sends a request to 'http://x.test/'"),
        (FOREIGN_PYTHON, "runs Python of json, which the harness cannot confine"),
    ],
)
def test_activities_that_act_beyond_the_namespace_must_be_listed(fakes, victim, reach):
    """Whatever their arguments are named: the guard judges what an activity can reach."""
    changed = experiment(method=[victim])
    with pytest.raises(ex.InvalidExperiment) as caught:
        ex.validate_experiment(changed, PATH)
    assert "act beyond its test namespace" in caught.value.message
    assert f"method: 'victim' {reach}" in caught.value.message
    assert "allow_beyond_namespace" in caught.value.fix
    listed = changed | {
        "extensions": [{"name": "kube-harness", "allow_beyond_namespace": ["victim"]}]
    }
    assert ex.validate_experiment(listed, PATH).allow_beyond_namespace == ("victim",)


@pytest.mark.parametrize(
    "contained",
    [
        chaosk8s("pod.actions", "terminate_pods", ns="${harness_namespace}"),
        chaosk8s("node.probes", "get_nodes"),
        chaosk8s("namespace.probes", "namespace_exists", name="kube-system"),
        chaosk8s(
            "chaosmesh.network.actions",
            "add_latency",
            name="l",
            latency="1ms",
            ns="${harness_namespace}",
            namespaces_selectors=["${harness_namespace}"],
        ),
    ],
)
def test_namespaced_actions_and_read_only_probes_need_no_listing(fakes, contained):
    ex.validate_experiment(experiment(method=[contained]), PATH)


def test_a_list_of_namespaces_may_hold_only_the_harness_namespace(fakes):
    victim = chaosk8s(
        "chaosmesh.stress.actions",
        "stress_cpu",
        name="s",
        workers=1,
        load=10,
        ns="${harness_namespace}",
        namespaces_selectors=["kube-system"],
    )
    with pytest.raises(ex.InvalidExperiment, match=r"sets namespaces_selectors=\['kube-system'\]"):
        ex.validate_experiment(experiment(method=[victim]), PATH)


def test_controls_are_refused_wherever_they_are(fakes):
    control = [{"name": "c", "provider": {"type": "python", "module": "os"}}]
    for changed in (
        experiment(controls=control),
        experiment(method=[activity("action", "act") | {"controls": control}]),
    ):
        with pytest.raises(ex.InvalidExperiment, match="controls run Python around every"):
            ex.validate_experiment(changed, PATH)


def test_a_namespace_list_given_as_the_placeholder_alone_is_fine(fakes):
    placeholder = "${harness_namespace}"
    victim = chaosk8s("chaosmesh.stress.actions", "stress_cpu", name="s", workers=1, load=10,
                      ns=placeholder, namespaces_selectors=placeholder)  # fmt: skip
    ex.validate_experiment(experiment(method=[victim]), PATH)


def test_allow_beyond_namespace_must_name_activities(fakes):
    with pytest.raises(ex.InvalidExperiment, match="allow_beyond_namespace names no activity: x"):
        ex.validate_experiment(with_extension(allow_beyond_namespace=["x"]), PATH)


def test_experiments_with_chaosk8s_node_actions_are_told_apart():
    assert ex.changes_nodes(experiment(method=[chaosk8s("node.actions", "cordon_node", name="n")]))
    assert not ex.changes_nodes(experiment(method=[chaosk8s("node.probes", "get_nodes")]))
    assert not ex.changes_nodes(experiment())


def test_listed_activities_run_on_an_existing_cluster_only_with_the_opt_in():
    settings = ex.HarnessSettings(allow_beyond_namespace=("cordon-all",))
    refusing = SimpleNamespace(name="existing", capabilities=SimpleNamespace(chaos_allowed=False))
    with pytest.raises(ex.InvalidExperiment) as caught:
        ex.refuse_beyond_namespace(settings, refusing)
    assert "cordon-all act beyond the test namespace" in caught.value.message
    assert "--allow-chaos-on-existing" in caught.value.fix
    opted_in = SimpleNamespace(name="existing", capabilities=SimpleNamespace(chaos_allowed=True))
    ex.refuse_beyond_namespace(settings, opted_in)
    ex.refuse_beyond_namespace(ex.HarnessSettings(), refusing)  # nothing listed: nothing asked


# ---------------------------------------------------------------- the kube-harness extension


def with_extension(**values):
    return experiment(extensions=[{"name": "kube-harness", **values}])


def test_extension_values_are_parsed(fakes):
    settings = ex.validate_experiment(
        with_extension(
            service="demo",
            max_error_rate="10%",
            slo={"p99": "20s", "min_rps": 2},
            warm_up_s="2s",
            settle_s=0,
            recover_within_s="90s",
            timeout_s=120,
            may_fail=["act"],
        ),
        PATH,
    )
    assert settings == ex.HarnessSettings(
        "demo", 0.1, {"max_p99_ms": 20000.0, "min_rps": 2.0}, 2.0, 0.0, 90.0, 120.0, ("act",)
    )
    judged = settings.judged_slo(load_spec(DEMO_SPEC).service("demo").slo)
    assert (judged.max_error_rate, judged.max_p95_ms, judged.max_p99_ms, judged.min_rps) == (
        0.1,
        500.0,
        20000.0,
        2.0,
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_eror_rate": 0}, "unknown key 'max_eror_rate'"),
        ({"max_error_rate": "150%"}, "max_error_rate: '150%' is not between 0% and 100%"),
        ({"settle_s": "soon"}, "settle_s: 'soon' is not a duration"),
        ({"slo": {"error_rate": "1%"}}, "slo: p95, p99 and min_rps only"),
        ({"slo": {"p99": "soon"}}, "slo: limits: p99: cannot read 'soon'"),
        ({"service": ""}, "service: must name a service"),
        ({"may_fail": "act"}, "may_fail: must be a list of activity names"),
        ({"may_fail": ["akt"]}, "may_fail names no activity: akt"),
    ],
)
def test_bad_extension_values_are_refused_with_the_file(fakes, values, message):
    with pytest.raises(ex.InvalidExperiment) as caught:
        ex.validate_experiment(with_extension(**values), PATH)
    assert str(PATH) in caught.value.message and message in caught.value.message


def test_the_service_is_the_option_then_the_extension_then_the_first():
    spec = SimpleNamespace(
        services=[SimpleNamespace(name="a"), SimpleNamespace(name="b")],
        service=lambda name: SimpleNamespace(name=name),
    )
    assert ex.experiment_service(spec, ex.HarnessSettings()).name == "a"
    assert ex.experiment_service(spec, ex.HarnessSettings(service="b")).name == "b"
    assert ex.experiment_service(spec, ex.HarnessSettings(service="b"), "c").name == "c"


# ---------------------------------------------------------------- files


def test_experiment_files_are_read_as_json_or_yaml(tmp_path):
    data = experiment()
    (tmp_path / "a.json").write_text(json.dumps(data))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    assert ex.load_experiment(tmp_path / "a.json") == ex.load_experiment(tmp_path / "a.yaml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "title: [unclosed", "not valid YAML"),
        ("bad.json", "{", "not valid JSON"),
        ("list.yaml", "- a\n- b\n", "must be a mapping, not list"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ex.InvalidExperiment, match=message) as caught:
        ex.load_experiment(tmp_path / name)
    assert str(tmp_path / name) in caught.value.message


def test_a_missing_file(tmp_path):
    with pytest.raises(ex.InvalidExperiment, match=r"nope\.yaml does not exist"):
        ex.load_experiment(tmp_path / "nope.yaml")


def test_shipped_experiments_are_valid():
    folder = ROOT / "scenarios" / "experiments"
    files = sorted(folder.glob("*.yaml"))
    assert {f.stem for f in files} >= {
        "pod-kill-under-load",
        "container-kill",
        "kubelet-restart",
        "partition-one-replica",
        "drain-blocked-by-pdb",
    }
    for path in files:
        data = ex.load_experiment(path)
        ex.validate_experiment(data, path)
        assert data["steady-state-hypothesis"]["probes"] and data["rollbacks"], path


SHIPPED = sorted((ROOT / "scenarios" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_experiments_are_portable(path):
    """No fixed pause, no configuration of their own (so no service's defaults): the harness
    sets the keys and the probes wait by the spec's times."""
    data = ex.load_experiment(path)
    assert "configuration" not in data
    for where, activity in ex._activities(data):
        assert "pauses" not in activity, f"{path.name}: {where}: {activity['name']}"
    assert "demo" not in json.dumps(data["method"]), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_chaos_validate_passes_in_a_fresh_shell(path, tmp_path):
    """chaostoolkit's own `chaos validate FILE`, with no HARNESS_* nor KUBECONFIG variable
    (no version check, no log file: the same validation without the network or litter)."""
    scrubbed = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    chaos = Path(sys.executable).parent / "chaos"
    done = subprocess.run(
        [str(chaos), "--no-version-check", "--no-log-file", "validate", str(path)],
        cwd=tmp_path,
        env=scrubbed,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "experiment syntax and semantic look valid" in done.stdout + done.stderr


# ---------------------------------------------------------------- configuration


def test_harness_configuration_wins_and_the_original_is_untouched():
    original = experiment(configuration={"harness_namespace": "mine", "other": 1})
    changed = ex.with_configuration(original, {"harness_namespace": "kh-1"})
    assert changed["configuration"] == {"harness_namespace": "kh-1", "other": 1}
    assert original["configuration"]["harness_namespace"] == "mine"


def test_chaosk8s_uses_the_clusters_kubeconfig_only_inside_the_block(tmp_path, monkeypatch):
    from chaosk8s import create_k8s_api_client
    from kubernetes import client
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", "/somewhere/else")
    monkeypatch.setenv("KUBERNETES_CONTEXT", "not-in-our-file")
    location, default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION, client.Configuration._default
    ours = write_kubeconfig(tmp_path / "kubeconfig", "https://10.1.2.3:6443")
    monkeypatch.delenv("KUBERNETES_VERIFY_SSL", raising=False)
    with ex.chaosk8s_kubeconfig(ours):
        api = create_k8s_api_client()
        assert api.configuration.host == "https://10.1.2.3:6443"
        assert client.Configuration.verify_ssl is True  # chaosk8s would turn it off
    assert "KUBERNETES_VERIFY_SSL" not in os.environ
    assert os.environ["KUBECONFIG"] == "/somewhere/else"
    assert os.environ["KUBERNETES_CONTEXT"] == "not-in-our-file"
    assert location == kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    assert client.Configuration._default is default
    assert "verify_ssl" not in vars(client.Configuration)
    assert isinstance(vars(client.Configuration)["debug"], property)


# ---------------------------------------------------------------- the run's bookkeeping


class FakeTimeline:
    """Marks on the wall clock, as the recorder puts them (the verdicts time from them)."""

    def __init__(self):
        self.entries = []

    def mark(self, label, **state):
        self.entries.append(Entry(time.time(), "MARK", "Mark", label, state))
        return self.entries[-1]

    def timeline(self):
        return Timeline(list(self.entries))


class FakeLoad:
    def __init__(self):
        self.runs = []

    def run(self, base_url, shape, **options):
        self.runs.append((base_url, shape, options))
        return self

    def placement_for(self, asked):
        return asked

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def result(self):
        stats = EndpointStats(None, "Aggregated", 1000, 0, 5, 1, 50, 5, 20, 40, 16)
        return LoadResult(
            "http://127.0.0.1:30080",
            0,
            100,
            stats,
            [stats],
            [],
            [],
            {},
            {},
            NO_GENERATOR,
            None,
            Path(),
        )


LABELS = {"app": "demo", "tier": "web"}


def deployment_status(ready=2, readiness=None):
    container = client.V1Container(name="demo", readiness_probe=readiness)
    return client.V1Deployment(
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=LABELS),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=LABELS),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
        status=client.V1DeploymentStatus(ready_replicas=ready, unavailable_replicas=None),
    )


def pod(name, uid, restarts=0):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, uid=uid),
        status=client.V1PodStatus(
            container_statuses=[
                client.V1ContainerStatus(
                    name="demo", restart_count=restarts, ready=True, image="i", image_id="i"
                )
            ]
        ),
    )


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Fakes for everything run_under_load touches; `calls` records what it did."""
    calls = SimpleNamespace(reverted=[], configuration=None, settings=None)
    cluster = SimpleNamespace(
        name="local",
        options=SimpleNamespace(name="kube-harness", context=None, allow_chaos=False),
        kubeconfig=lambda: write_kubeconfig(tmp_path / "kubeconfig", "https://10.9.9.9:6443"),
    )
    kube = SimpleNamespace(
        api_client=client.ApiClient(),
        apps=SimpleNamespace(read_namespaced_deployment=lambda name, ns: calls.deployment),
        core=SimpleNamespace(
            list_namespaced_pod=lambda ns, label_selector=None: SimpleNamespace(items=calls.pods)
        ),
        policy=SimpleNamespace(
            list_namespaced_pod_disruption_budget=lambda ns: SimpleNamespace(items=[])
        ),
    )
    calls.deployment = deployment_status()
    calls.pods = [pod("demo-a", "uid-a", restarts=3), pod("demo-b", "uid-b")]
    monkeypatch.setattr(
        ex, "revert_all", lambda cluster, kube, namespace: calls.reverted.append(namespace) or []
    )
    monkeypatch.setattr(
        ex, "Ledger", lambda name: SimpleNamespace(pending=lambda namespace: calls.pending)
    )
    # Like faults.leftovers(namespace=...): other namespaces' faults are not reported.
    monkeypatch.setattr(
        ex,
        "leftovers",
        lambda cluster, kube, namespace: [line for line in calls.leftovers if namespace in line],
    )
    calls.pending = []
    calls.leftovers = ["node-1: iptables rule in 42=pod kh-other-1/x"]  # another test's
    service = load_spec(DEMO_SPEC).service("demo")
    return SimpleNamespace(
        calls=calls,
        kwargs=dict(
            cluster=cluster,
            kube=kube,
            deployed=SimpleNamespace(
                namespace="kh-test-1",
                base_url="http://127.0.0.1:30080",
                load_url=lambda placement: "http://127.0.0.1:30080",
                objects=[
                    {"kind": "Deployment", "metadata": {"name": "demo"}, "spec": {"replicas": 2}}
                ],
            ),
            service=service,
            load=FakeLoad(),
            timeline=FakeTimeline(),
            report_dir=tmp_path,
        ),
    )


QUICK = [{"name": "kube-harness", "warm_up_s": 0, "settle_s": 0}]


def journal(**changes):
    """A completed run's journal whose steady state held (the verdicts' own tests are in
    test_chaos_verdicts.py)."""
    answers = {"activity": {"type": "probe", "name": "answers"}, "status": "succeeded",
               "output": True, "tolerance_met": True}  # fmt: skip
    kept = {"steady_state_met": True, "probes": [answers]}
    return {
        "status": "completed",
        "deviated": False,
        "steady_states": {"before": kept, "after": kept},
        "run": [],
        "rollbacks": [],
    } | changes


def fake_run(world, outcome):
    """A stand-in for chaoslib's run_experiment: notes its input, then does `outcome`."""

    def run_experiment(experiment, settings, event_handlers):
        world.calls.configuration = experiment["configuration"]
        world.calls.settings = settings
        world.calls.kubeconfig = os.environ.get("KUBECONFIG")
        return outcome(event_handlers[0])

    return run_experiment


def test_a_good_run_is_judged_written_and_reverted(world, monkeypatch):
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    assert [c.verdict.name for c in evidence.checks if not c.passed] == []
    assert world.calls.configuration == {
        "harness_kubeconfig": str(world.kwargs["report_dir"] / "kubeconfig"),
        "harness_cluster_provider": "local",
        "harness_cluster_name": "kube-harness",
        "harness_namespace": "kh-test-1",
        "harness_deployment": "demo",
        "harness_selector": "app=demo,tier=web",
        "harness_base_url": "http://127.0.0.1:30080",
        "harness_load_path": "/",
        "harness_container": "demo",
        "harness_allow_chaos": "false",
        "harness_ready_within_s": 60.0,
        "harness_leaves_endpoints_within_s": 10.0,
        "harness_request_timeout_s": 5.0,
        "harness_pods_at_start": {"uid-a": {"demo": 3}, "uid-b": {"demo": 0}},
    }
    assert set(world.calls.configuration) == set(ex.CONFIGURATION_KEYS)
    assert world.calls.settings["runtime"]["rollbacks"]["strategy"] == "always"
    assert world.calls.kubeconfig == str(world.kwargs["report_dir"] / "kubeconfig")
    assert world.calls.reverted == ["kh-test-1"]
    ((_, _, options),) = world.kwargs["load"].runs
    assert options["env"]["LOAD_PATH"] == "/"
    written = json.loads((world.kwargs["report_dir"] / "journal.json").read_text())
    assert written["status"] == "completed"
    assert evidence.summary().startswith("Every promise kept")


def test_the_experiments_recover_within_wins_over_the_specs_ready_within(world, monkeypatch):
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    ex.run_under_load(experiment(extensions=[QUICK[0] | {"recover_within_s": 30}]), **world.kwargs)
    assert world.calls.configuration["harness_ready_within_s"] == 30


def test_a_failed_run_begins_its_failure_with_what_broke_and_why(world, monkeypatch):
    """The partitioned pod stayed Ready: the timeline says so, the pod template says why."""
    exec_probe = client.V1Probe(
        _exec=client.V1ExecAction(command=["curl", "-f", "localhost:8080/readyz"])
    )
    world.calls.deployment = deployment_status(readiness=exec_probe)
    world.kwargs["timeline"].entries.append(
        Entry(0.5, "ADDED", "Pod", "demo-a", {"owner": "demo-6d5f", "ready": True})
    )
    left = {"module": "harness.chaos.probes", "func": "partitioned_pod_left_endpoints"}
    cut = {"activity": {"type": "action", "name": "cut", "provider": {"func": "partition_one_pod"}},
           "status": "succeeded", "output": {"pod": "demo-a", "id": "p1"}}  # fmt: skip
    gone = {"activity": {"type": "probe", "name": "left", "tolerance": True, "provider": left},
            "status": "succeeded", "output": False}  # fmt: skip
    monkeypatch.setattr(
        ex, "run_experiment", fake_run(world, lambda marks: journal(run=[cut, gone]))
    )
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    (bad,) = [c for c in evidence.checks if not c.passed]
    assert bad.verdict.name == "method probes outside their tolerance"
    with pytest.raises(BehaviourViolation) as caught:
        evidence.assert_all()
    assert str(caught.value).splitlines()[0] == (
        "The pod stayed Ready while partitioned: its readiness probe is an exec probe that dials "
        "localhost (`curl -f localhost:8080/readyz`), which runs inside the pod, where the "
        "partition leaves localhost reachable."
    )


def test_faults_left_by_the_rollbacks_fail_the_run(world, monkeypatch):
    from harness.chaos.ledger import Injected

    world.calls.pending = [
        Injected("1a2b3c", "partition_pod", "kube-harness", "kh-test-1", "node-1", "demo-x")
    ]
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    (bad,) = [c for c in evidence.checks if not c.passed]
    assert bad.verdict.name == "faults still pending after the rollbacks"
    assert bad.verdict.note.startswith("the rollbacks left partition_pod 1a2b3c")
    assert world.calls.reverted == ["kh-test-1"]


def test_leftovers_in_its_namespace_fail_the_run(world, monkeypatch):
    world.calls.leftovers.append("node-1: iptables rule in 43=pod kh-test-1/demo-x")
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    (bad,) = [c for c in evidence.checks if not c.passed]
    assert bad.verdict.name == "leftovers of its faults after the final revert"
    assert bad.verdict.note == (
        "node-1: iptables rule in 43=pod kh-test-1/demo-x was still there after the final revert"
    )


def test_faults_are_reverted_when_the_run_breaks(world, monkeypatch):
    def breaks(marks):
        raise RuntimeError("chaoslib broke")

    monkeypatch.setattr(ex, "run_experiment", fake_run(world, breaks))
    with pytest.raises(RuntimeError, match="chaoslib broke"):
        ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    assert world.calls.reverted == ["kh-test-1"]
    assert os.environ.get("KUBECONFIG") != world.calls.kubeconfig


def test_ctrl_c_swallowed_by_chaoslib_is_raised_again_after_the_revert(world, monkeypatch):
    def interrupted(marks):
        marks.signal_exit()  # what chaoslib tells its handlers on KeyboardInterrupt
        return journal(status="interrupted")

    monkeypatch.setattr(ex, "run_experiment", fake_run(world, interrupted))
    with pytest.raises(KeyboardInterrupt):
        ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    assert world.calls.reverted == ["kh-test-1"]
    assert (world.kwargs["report_dir"] / "journal.json").exists()


def test_the_timeline_shows_the_phases_and_activities():
    timeline = FakeTimeline()
    marks = ex.TimelineMarks(timeline)
    marks.start_method({})
    marks.start_activity({"type": "action", "name": "kill"})
    marks.activity_completed({"type": "action", "name": "kill"}, {"status": "failed"})
    marks.method_completed({})
    marks.rollbacks_completed({}, {})
    assert [e.name for e in timeline.entries] == [
        "chaos: method",
        "chaos: action kill",
        "chaos: action kill failed",
        "chaos: method done",
        "chaos: rollbacks done",
    ]


# ---------------------------------------------------------------- collection (pytester)


VALID = """
title: steady
description: a harmless experiment
steady-state-hypothesis:
  title: answers
  probes:
    - {type: probe, name: answers, tolerance: true,
       provider: {type: python, module: khx_fake_activities, func: answers}}
method:
  - {type: action, name: act, provider: {type: python, module: khx_fake_activities, func: act}}
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    """A project with the fake activities importable (and trusted) and the demo spec
    selected."""
    monkeypatch.setattr(ex, "CONTAINED_MODULES", (*ex.CONTAINED_MODULES, FAKES))
    pytester.makepyfile(**{FAKES: FAKE_ACTIVITIES})
    pytester.syspathinsert()
    pytester.mkdir("scenarios")
    pytester.mkdir("scenarios/experiments")
    return pytester


def write(pytester, relative: str, text: str) -> Path:
    path = pytester.path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_valid_experiment_is_one_item_named_after_the_file_and_service(inner):
    write(inner, "scenarios/experiments/steady.yaml", VALID)
    write(inner, "scenarios/experiments/notes.txt", "not an experiment")
    write(inner, "scenarios/not-an-experiment.yaml", VALID)
    result = inner.runpytest(
        "--collect-only", "-q", f"--resilience-spec={DEMO_SPEC}", "--no-builtin-suite"
    )
    result.stdout.fnmatch_lines(["scenarios/experiments/steady.yaml::steady[[]demo[]]", "1 test*"])
    assert result.ret == 0


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        (
            VALID.replace("title: steady", "title: ''"),
            ["kube-harness: experiment */broken.yaml: experiment requires a title"],
        ),
        (
            VALID.replace("func: act", "func: nope"),
            ["kube-harness: experiment */broken.yaml: * does not expose a function called 'nope'*"],
        ),
        (
            VALID.replace("func: act}", "func: kill, arguments: {ns: kube-system}}"),
            [
                "kube-harness: experiment */broken.yaml could reach beyond its test namespace:",
                "  - method: 'act' sets ns='kube-system', not ${harness_namespace}",
            ],
        ),
        (
            VALID + "extensions: [{name: kube-harness, service: nope}]",
            ["kube-harness: */demo-service.spec.yaml: no service named 'nope'"],
        ),
    ],
)
def test_an_invalid_experiment_is_a_collection_error_and_nothing_runs(inner, text, lines):
    write(inner, "scenarios/experiments/broken.yaml", text)
    inner.makepyfile(test_other="def test_other(cluster):\n    raise AssertionError('ran')\n")
    result = inner.runpytest(f"--resilience-spec={DEMO_SPEC}", "--no-builtin-suite", "--run-id=r1")
    result.stdout.fnmatch_lines(["*ERROR collecting scenarios/experiments/broken.yaml*", *lines])
    result.assert_outcomes(errors=1)
    assert "Traceback" not in result.stdout.str()
    assert not list((inner.path / "reports" / "r1").glob("*"))  # no test started


def test_experiments_folders_elsewhere_are_collected_only_when_given(inner):
    write(inner, "elsewhere/experiments/steady.json", json.dumps(yaml.safe_load(VALID)))
    spec = f"--resilience-spec={DEMO_SPEC}"
    not_given = inner.runpytest("--collect-only", "-q", spec, "elsewhere")
    assert "steady" not in not_given.stdout.str()
    given = inner.runpytest("--collect-only", "-q", spec, "elsewhere/experiments")
    given.stdout.fnmatch_lines(["elsewhere/experiments/steady.json::steady[[]demo[]]"])


def two_service_spec(path: Path) -> Path:
    data = yaml.safe_load(DEMO_SPEC.read_text())
    demo = data["services"][0]
    demo["manifests"] = str(DEMO_SPEC.parent / demo["manifests"])
    data["services"] = [demo, demo | {"name": "other"}]
    path.write_text(yaml.safe_dump(data))
    return path


def test_service_spec_is_parametrized_for_scenarios_and_chosen_for_the_rest(inner):
    spec = two_service_spec(inner.path / "two.spec.yaml")
    write(
        inner,
        "scenarios/experiments/steady.yaml",
        VALID + "extensions: [{name: kube-harness, service: other}]",
    )
    inner.makepyfile(
        test_choice="""
        import pytest

        def test_each(service_spec):
            print("EACH", service_spec.name)

        @pytest.mark.harness_service("other")
        def test_marked(request):
            print("MARKED", request.getfixturevalue("service_spec").name)

        def test_unmarked(request):
            print("UNMARKED", request.getfixturevalue("service_spec").name)
        """
    )
    result = inner.runpytest(
        "-s", "-v", f"--resilience-spec={spec}", "--no-builtin-suite", "test_choice.py"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        ["*EACH demo*", "*EACH other*", "*MARKED other*", "*UNMARKED demo*"]
    )
    collected = inner.runpytest("--collect-only", "-q", f"--resilience-spec={spec}", "scenarios")
    collected.stdout.fnmatch_lines(["scenarios/experiments/steady.yaml::steady[[]other[]]"])


def test_activities_a_provider_cannot_carry_out_are_named_with_why():
    experiment = yaml.safe_load(
        (Path(__file__).parents[1] / "scenarios/experiments/kubelet-restart.yaml").read_text()
    )

    class Plain:  # a provider without component control, like existing's
        name = "existing"

    class WithComponents(Plain):
        name = "local"

        def stop_component(self, component): ...
        def start_component(self, component): ...
        def restart_component(self, component): ...
        def component_status(self): ...

    assert ex.unsupported_activities(experiment, Plain()) == [
        "restart-kubelet (the existing provider cannot stop and start cluster components)"
    ]
    assert ex.unsupported_activities(experiment, WithComponents()) == []
