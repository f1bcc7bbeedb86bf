"""What is collected: the built-in suite next to the paths given, Chaos Toolkit experiment
files as items, one parametrization per service of the spec and per --repeat, and markers
from the fixtures a test uses (`e2e`) and its area."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import suite
from harness.cluster import ClusterProvider
from harness.deploy import Deployed
from harness.errors import HarnessError
from harness.kube import Kube
from harness.load import Load
from harness.observe import TimelineRecorder
from harness.plugin.shared import (
    BUILTIN_SUITE_KEY,
    CLUSTER_FIXTURE,
    E2E_MARKER,
    EXCLUSIVE_MARKER,
    EXPERIMENT_KEY,
    PROMISES_MARKER,
    REPEAT_FIXTURE,
    SERVICE_MARKER,
    fail_on_harness_error,
    repeat_ids,
    resilience_spec_of,
)
from harness.scenario import judge
from harness.spec import ServiceSpec

EXPERIMENT_SUFFIXES = (".json", ".yaml", ".yml")
# The paths given on the command line, resolved once.
GIVEN_KEY = pytest.StashKey[set[Path]]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Scenarios asking for `service_spec` run once per service of the resilience spec, and
    `--repeat N` times each; one marked `promises(PROMISE, ...)` only for the services whose
    spec makes every one of them (see `ServiceSpec.promises`), and for none is deselected."""
    if "service_spec" not in metafunc.fixturenames:
        return
    spec = resilience_spec_of(metafunc.config)
    services = list(spec.services)
    if (marker := metafunc.definition.get_closest_marker(PROMISES_MARKER)) is not None:
        if not marker.args:
            raise pytest.UsageError(
                f"kube-harness: {metafunc.definition.nodeid}: the `promises` marker takes "
                'the promises a service must all make, e.g. @pytest.mark.promises("hpa")'
            )
        try:
            services = [s for s in services if all(s.promises(p) for p in marker.args)]
        except HarnessError as exc:
            raise pytest.UsageError(f"kube-harness: {metafunc.definition.nodeid}: {exc}") from None
        if not services:  # one item, with no service: deselected below
            metafunc.parametrize("service_spec", [None], ids=["unpromised"])
            return
    metafunc.parametrize("service_spec", services, ids=[s.name for s in services])
    repeat = metafunc.config.getoption("repeat")
    if repeat > 1:
        metafunc.fixturenames.append(REPEAT_FIXTURE)
        metafunc.parametrize(
            REPEAT_FIXTURE, range(1, repeat + 1), ids=repeat_ids(repeat), indirect=True
        )


@pytest.fixture
def harness_repeat(request: pytest.FixtureRequest) -> int:
    """Which of the --repeat runs this is (1-based)."""
    return request.param


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """With --resilience-spec, the built-in scenarios and experiments are collected next to
    the paths given (or testpaths), unless those hold them already or --no-builtin-suite;
    with --builtin-suite-only, alone."""
    config = session.config
    only, off = config.getoption("builtin_suite_only"), config.getoption("no_builtin_suite")
    if only and off:
        raise pytest.UsageError("--builtin-suite-only and --no-builtin-suite: give one of them")
    if config.getoption("resilience_spec"):
        try:  # its problems once, not again as the collection error of each module
            resilience_spec_of(config)
        except HarnessError as exc:
            raise pytest.UsageError(f"kube-harness: {exc}") from None
    if not only and (off or not config.getoption("resilience_spec")):
        return
    try:
        collection = suite.collection(
            config.args,
            config.invocation_params.dir,
            only=only,
            explicit=config.args_source == pytest.Config.ArgsSource.ARGS,
        )
    except HarnessError as exc:
        raise pytest.UsageError(f"kube-harness: {exc}") from None
    if collection is not None:
        config.args[:] = collection.args
        config.stash[BUILTIN_SUITE_KEY] = collection


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Through the virtualenv to an installed built-in suite, past nothing else in it."""
    collection = config.stash.get(BUILTIN_SUITE_KEY, None)
    return collection.ignore(collection_path) if collection else None


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`e2e` on every test whose fixtures reach the run's cluster, so `-m "not e2e"` is the
    unit tier without a list kept by hand; markers by area: the built-in scenarios' `hpa`,
    `probes`, ..., experiments' `chaos`. Scenarios no service promises are deselected."""
    unpromised = [i for i in items if _unpromised(i)]
    if unpromised:
        config.hook.pytest_deselected(items=unpromised)
        items[:] = [i for i in items if i not in unpromised]
    for item in items:
        if CLUSTER_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(E2E_MARKER)
        name = "chaos" if isinstance(item, ExperimentItem) else suite.area(item.path)
        if name:
            item.add_marker(name)


def _unpromised(item: pytest.Item) -> bool:
    """The one item of a scenario no service promises (its `service_spec` is None)."""
    callspec = getattr(item, "callspec", None)
    return (
        callspec is not None
        and "service_spec" in callspec.params
        and (callspec.params["service_spec"] is None)
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Chaos Toolkit experiments become test items: those under scenarios/**/experiments/
    (the rootdir's or the built-in suite's, or under a folder named `experiments` given on the
    command line), and a file given on the command line itself (`harness chaos run`)."""
    if file_path.suffix in EXPERIMENT_SUFFIXES and _is_experiment(file_path, parent.config):
        return ExperimentFile.from_parent(parent, path=file_path)
    return None


def _is_experiment(path: Path, config: pytest.Config) -> bool:
    if GIVEN_KEY not in config.stash:
        config.stash[GIVEN_KEY] = {
            (config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args
        }
    given = config.stash[GIVEN_KEY]
    if path.resolve() in given:
        return True
    folders = [folder for folder in path.parents if folder.name == "experiments"]
    scenarios = config.rootpath / "scenarios"
    return any(
        folder.is_relative_to(scenarios) or suite.contains(folder) or folder in given
        for folder in folders
    )


class ExperimentFile(pytest.File):
    """One experiment file: validated at collection, one item for the service it targets."""

    def collect(self) -> list[pytest.Item]:
        from harness.chaos.experiment import (
            experiment_service,
            load_experiment,
            validate_experiment,
        )

        try:
            experiment = load_experiment(self.path)
            settings = validate_experiment(experiment, self.path)
            service = experiment_service(
                resilience_spec_of(self.config),
                settings,
                self.config.getoption("experiment_service"),
            )
        except HarnessError as exc:
            raise self.CollectError(f"kube-harness: {exc}") from None
        repeat = self.config.getoption("repeat")
        ids = [service.name] if repeat == 1 else [f"{service.name}-{i}" for i in repeat_ids(repeat)]
        items = []
        for item_id in ids:
            item = ExperimentItem.from_parent(
                self, name=f"{self.path.stem}[{item_id}]", callobj=_run_experiment
            )
            item.add_marker(getattr(pytest.mark, SERVICE_MARKER)(service.name))
            if "node" in experiment.get("tags", []):  # node faults reach every test's pods
                item.add_marker(getattr(pytest.mark, EXCLUSIVE_MARKER))
            item.stash[EXPERIMENT_KEY] = experiment
            items.append(item)
        return items


class ExperimentItem(pytest.Function):
    """An experiment run through the normal fixtures; reported as the experiment file."""

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"chaos experiment {self.name}"


def _run_experiment(
    request: pytest.FixtureRequest,
    cluster: ClusterProvider,
    kube_api: Kube,
    deployed: Deployed,
    service_spec: ServiceSpec,
    load: Load,
    timeline: TimelineRecorder,
    test_report_dir: Path,
) -> None:
    from harness.chaos.experiment import run_under_load, unsupported_activities

    experiment = request.node.stash[EXPERIMENT_KEY]
    if unsupported := unsupported_activities(experiment, cluster):
        pytest.skip("cannot run here: " + "; ".join(unsupported))
    try:
        evidence = run_under_load(
            experiment,
            cluster=cluster,
            kube=kube_api,
            deployed=deployed,
            service=service_spec,
            load=load,
            timeline=timeline,
            report_dir=test_report_dir,
        )
    except HarnessError as exc:
        fail_on_harness_error(exc)
    judge(evidence, test_report_dir)
