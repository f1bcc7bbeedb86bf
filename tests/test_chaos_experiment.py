"""Chaos experiments: validation, the namespace guard, the extension, verdicts and the run's
bookkeeping with fakes; collection through pytester. The real runs are the experiment items
under scenarios/experiments/."""

import json
import os
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.chaos import experiment as ex
from harness.load import LoadResult
from harness.load.result import EndpointStats
from harness.observe import Entry, Timeline
from harness.spec import load_spec

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
    """A module of tiny activities, importable by chaoslib as `khx_fake_activities`."""
    (tmp_path / f"{FAKES}.py").write_text(FAKE_ACTIVITIES)
    monkeypatch.syspath_prepend(str(tmp_path))
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
        ("bad.yaml", "title: [unclosed", "not valid yaml"),
        ("bad.json", "{", "not valid json"),
        ("list.yaml", "- a\n- b\n", "must be a mapping, not list"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ex.InvalidExperiment, match=message) as caught:
        ex.load_experiment(tmp_path / name)
    assert str(tmp_path / name) in caught.value.message


def test_a_missing_file(tmp_path):
    with pytest.raises(ex.InvalidExperiment, match="cannot be read"):
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
        assert set(data["configuration"]) == set(ex.CONFIGURATION_KEYS), path


# ---------------------------------------------------------------- configuration


def test_harness_configuration_wins_and_the_original_is_untouched():
    original = experiment(configuration={"harness_namespace": "mine", "other": 1})
    changed = ex.with_configuration(original, {"harness_namespace": "kh-1"})
    assert changed["configuration"] == {"harness_namespace": "kh-1", "other": 1}
    assert original["configuration"]["harness_namespace"] == "mine"


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


def test_chaosk8s_uses_the_clusters_kubeconfig_only_inside_the_block(tmp_path, monkeypatch):
    from chaosk8s import create_k8s_api_client
    from kubernetes import client
    from kubernetes.config import kube_config

    monkeypatch.setenv("KUBECONFIG", "/somewhere/else")
    monkeypatch.setenv("KUBERNETES_CONTEXT", "not-in-our-file")
    location, default = kube_config.KUBE_CONFIG_DEFAULT_LOCATION, client.Configuration._default
    ours = kubeconfig(tmp_path / "kubeconfig", "https://10.1.2.3:6443")
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


# ---------------------------------------------------------------- verdicts from the journal


def run(name, status="succeeded", output=None, kind="action", **activity_keys):
    entry = {"activity": {"type": kind, "name": name, **activity_keys}, "status": status}
    entry["output"] = output
    if status != "succeeded":
        entry["exception"] = ["Traceback...\n", f"ActivityFailed: {name} broke\n"]
    return entry


def met(*probes):
    return {"steady_state_met": all(p.get("tolerance_met") for p in probes), "probes": probes}


def probe_run(name, output, ok):
    return run(name, output=output, kind="probe") | {"tolerance_met": ok}


def journal(**changes):
    return {
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": met(probe_run("service-answers", True, True)),
            "after": met(probe_run("service-answers", True, True)),
        },
        "run": [run("kill"), run("check", kind="probe", output=2, tolerance=2)],
        "rollbacks": [run("undo")],
    } | changes


DEFAULTS = ex.HarnessSettings()


def verdicts(j, settings=DEFAULTS):
    checks = ex.journal_checks(j, {}, settings, since=0, until=10)
    return {c.verdict.name: c for c in checks}


def failed(j, settings=DEFAULTS):
    return {name: c.verdict.note for name, c in verdicts(j, settings).items() if not c.passed}


def test_a_completed_run_with_the_steady_state_kept_passes():
    checks = verdicts(journal())
    assert list(checks) == [
        "chaos run not completed",
        "steady-state probes not met before the method",
        "steady-state probes not met after the method",
        "activities failed or out of tolerance",
    ]
    assert all(c.passed for c in checks.values())


def test_a_deviated_steady_state_names_the_probe_and_its_output():
    after = met(probe_run("service-answers", False, False))
    assert failed(journal(deviated=True, steady_states={"before": met(), "after": after})) == {
        "steady-state probes not met after the method": "service-answers: false"
    }


def test_a_run_stopped_before_the_method_fails_on_status_and_the_missing_hypothesis():
    states = {"before": met(probe_run("service-answers", None, False) | {"status": "failed"})}
    problems = failed(journal(status="failed", steady_states=states, run=[], rollbacks=[]))
    assert problems == {
        "chaos run not completed": "status 'failed'",
        "steady-state probes not met before the method": "service-answers: null (failed)",
        "steady-state probes not met after the method": "not run (the run stopped before it)",
    }


def test_failed_activities_fail_unless_the_extension_allows_it():
    j = journal(run=[run("drain", status="failed")], rollbacks=[run("undo", status="failed")])
    assert failed(j) == {
        "activities failed or out of tolerance": "drain: ActivityFailed: drain broke; "
        "undo: ActivityFailed: undo broke"
    }
    allowed = ex.HarnessSettings(may_fail=("drain",))
    assert failed(j, allowed) == {
        "activities failed or out of tolerance": "undo: ActivityFailed: undo broke"
    }


def test_method_probes_are_judged_by_their_tolerance():
    j = journal(
        run=[
            run("left", kind="probe", output=False, tolerance=True),
            run("ready", kind="probe", output=0, tolerance={"type": "range", "range": [1, 9]}),
            run("untolerant", kind="probe", output="anything"),
        ]
    )
    assert failed(j) == {
        "activities failed or out of tolerance": "left: false outside True; "
        "ready: 0 outside {'type': 'range', 'range': [1, 9]}"
    }


# ---------------------------------------------------------------- the run's bookkeeping


class FakeTimeline:
    def __init__(self):
        self.entries = []

    def mark(self, label, **state):
        self.entries.append(Entry(len(self.entries) + 1.0, "MARK", "Mark", label, state))
        return self.entries[-1]

    def timeline(self):
        return Timeline(list(self.entries))


class FakeLoad:
    def __init__(self):
        self.runs = []

    def run(self, base_url, shape, **options):
        self.runs.append((base_url, shape, options))
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def result(self):
        stats = EndpointStats(None, "Aggregated", 1000, 0, 5, 1, 50, 5, 20, 40, 16)
        return LoadResult(
            "http://127.0.0.1:30080", 0, 100, stats, [stats], [], [], {}, {}, [], 0, None, Path()
        )


def deployment_status(ready=2):
    return SimpleNamespace(
        spec=SimpleNamespace(
            replicas=2, selector=SimpleNamespace(match_labels={"app": "demo", "tier": "web"})
        ),
        status=SimpleNamespace(ready_replicas=ready, unavailable_replicas=None),
    )


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Fakes for everything run_under_load touches; `calls` records what it did."""
    calls = SimpleNamespace(reverted=[], configuration=None, settings=None)
    cluster = SimpleNamespace(
        name="local",
        options=SimpleNamespace(name="kube-harness", context=None, allow_chaos=False),
        kubeconfig=lambda: kubeconfig(tmp_path / "kubeconfig", "https://10.9.9.9:6443"),
    )
    kube = SimpleNamespace(
        apps=SimpleNamespace(read_namespaced_deployment=lambda name, ns: deployment_status())
    )
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
            deployed=SimpleNamespace(namespace="kh-test-1", base_url="http://127.0.0.1:30080"),
            service=service,
            load=FakeLoad(),
            timeline=FakeTimeline(),
            report_dir=tmp_path,
        ),
    )


QUICK = [{"name": "kube-harness", "warm_up_s": 0, "settle_s": 0}]


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
        "harness_container": "demo",
        "harness_allow_chaos": "false",
    }
    assert world.calls.settings["runtime"]["rollbacks"]["strategy"] == "always"
    assert world.calls.kubeconfig == str(world.kwargs["report_dir"] / "kubeconfig")
    assert world.calls.reverted == ["kh-test-1"]
    ((_, _, options),) = world.kwargs["load"].runs
    assert options["env"]["LOAD_PATH"] == "/"
    written = json.loads((world.kwargs["report_dir"] / "journal.json").read_text())
    assert written["status"] == "completed"


def test_faults_left_by_the_rollbacks_fail_the_run(world, monkeypatch):
    from harness.chaos.ledger import Injected

    world.calls.pending = [
        Injected("1a2b3c", "partition_pod", "kube-harness", "kh-test-1", "node-1", "demo-x")
    ]
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    (bad,) = [c for c in evidence.checks if not c.passed]
    assert bad.verdict.name == "faults still pending after the rollbacks"
    assert "partition_pod 1a2b3c" in bad.verdict.note
    assert world.calls.reverted == ["kh-test-1"]


def test_leftovers_in_its_namespace_fail_the_run(world, monkeypatch):
    world.calls.leftovers.append("node-1: iptables rule in 43=pod kh-test-1/demo-x")
    monkeypatch.setattr(ex, "run_experiment", fake_run(world, lambda marks: journal()))
    evidence = ex.run_under_load(experiment(extensions=QUICK), **world.kwargs)
    (bad,) = [c for c in evidence.checks if not c.passed]
    assert bad.verdict.name == "leftovers of its faults after the final revert"
    assert bad.verdict.note == "node-1: iptables rule in 43=pod kh-test-1/demo-x"


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
def inner(pytester):
    """A project with the fake activities importable and the demo spec selected."""
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
    (demo,) = data["services"]
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
        "restart-kubelet (the existing provider cannot restart cluster components)"
    ]
    assert ex.unsupported_activities(experiment, WithComponents()) == []
