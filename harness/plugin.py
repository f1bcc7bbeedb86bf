"""The kube-harness pytest plugin: options, fixtures and hooks. The logic lives in the library."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from harness import hooks, suite
from harness.cluster import (
    CHOICES,
    ClusterOptions,
    ClusterProvider,
    NodeLifecycle,
    Selection,
    delete_cluster,
    make_provider,
    select_provider,
)
from harness.cluster import active as active_cluster
from harness.cluster.provider import DEFAULT_CLUSTER_NAME
from harness.deploy import Deployed
from harness.diagnostics import collect_diagnostics
from harness.errors import HarnessError, InvalidConfiguration
from harness.interrupt import terminate_as_interrupt
from harness.kube import Kube
from harness.load import Load
from harness.load.cluster import ClusterSite
from harness.load.runner import PLACEMENTS
from harness.locks import file_lock
from harness.namespaces import create_namespace, delete_namespace, namespace_name
from harness.observe import TimelineRecorder
from harness.paths import cache_dir, lock_file
from harness.progress import show_in_terminal
from harness.report import SCREENSHOT_FILE, earlier_runs, screenshot, update_latest, write_report
from harness.run import Run
from harness.scenario import (
    deploy_service,
    judge,
    provide_images,
    provide_load_image,
    read_spec,
)
from harness.spec import MAX_LOAD_WORKERS, ResilienceSpec, ServiceSpec

RUN_KEY = pytest.StashKey[Run]()
PHASE_REPORTS_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()
DIAGNOSTICS_KEY = pytest.StashKey[list[Path]]()
SPEC_KEY = pytest.StashKey[ResilienceSpec]()
BUILTIN_SUITE_KEY = pytest.StashKey[suite.Collection]()
EXPERIMENT_KEY = pytest.StashKey[dict]()
OPTIONS_KEY = pytest.StashKey[ClusterOptions]()
SERVICE_MARKER = "harness_service"
# How tests share the run's cluster under pytest-xdist (see the `_cluster_turn` fixture).
EXCLUSIVE_MARKER = "exclusive_cluster"
# Set by a test that runs a pytest of its own against its cluster: the cluster it holds the
# turn on (the inner run takes no turn of its own; the test is `exclusive_cluster` when the
# inner run needs the cluster alone).
TURN_HELD_ENV = "KUBE_HARNESS_CLUSTER_TURN_HELD"
CPU_MARKER = "cpu_sensitive"
E2E_MARKER = "e2e"
CLUSTER_FIXTURE = "cluster"
REPEAT_FIXTURE = "harness_repeat"
# pytest-kind owns --cluster-name; its default names its own clusters, not ours.
PYTEST_KIND_DEFAULT_NAME = "pytest-kind"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "kube-harness",
        "kube-harness (also uses pytest-kind's "
        "--cluster-name, --keep-cluster, --kubeconfig, --kind-image)",
    )
    group.addoption(
        "--cluster-provider",
        choices=CHOICES,
        default=None,
        help="where the cluster comes from (default: $HARNESS_PROVIDER, else detected: "
        "--kubeconfig given -> existing, Docker able to run kind -> kind, else local)",
    )
    group.addoption(
        "--cluster-context", default=None, help="kubeconfig context (existing provider)"
    )
    group.addoption(
        "--cluster-workers",
        type=int,
        default=0,
        help="worker nodes besides the control plane (kind)",
    )
    group.addoption(
        "--load-workers",
        type=int,
        default=None,
        metavar="N",
        help="send every load run from Locust's distributed mode, a master and N workers "
        "(0: one Locust process; default: the spec's load.workers, else 0)",
    )
    group.addoption(
        "--load-placement",
        choices=PLACEMENTS,
        default=None,
        help="where every load run's Locust runs: host (this machine, through a NodePort on "
        "127.0.0.1) or cluster (pods in the test's namespace, through the Service's name; "
        "default: the spec's load.placement, else host)",
    )
    group.addoption(
        "--allow-chaos-on-existing",
        action="store_true",
        help="allow faults against an existing cluster (only in harness namespaces)",
    )
    group.addoption(
        "--keep-failed-namespaces",
        action="store_true",
        help="keep the namespace of a failing test for debugging",
    )
    group.addoption(
        "--reports-dir", default="reports", help="folder for reports/<run-id>/ (default: reports)"
    )
    group.addoption("--run-id", default=None, help="run id (default: generated)")
    group.addoption(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every scenario and experiment N times; the report counts passes per "
        "scenario, so a flaky one shows as flaky",
    )
    group.addoption(
        "--resilience-spec",
        default=None,
        help="the services and promises the scenarios check; also collects kube-harness's "
        "built-in scenarios and experiments (default: scenarios/demo-service.spec.yaml under "
        "the rootdir, else the demo service's spec shipped with kube-harness)",
    )
    group.addoption(
        "--no-builtin-suite",
        action="store_true",
        help="with --resilience-spec: collect only the paths given (or testpaths), not the "
        "built-in scenarios and experiments",
    )
    group.addoption(
        "--builtin-suite-only",
        action="store_true",
        help="collect only the built-in scenarios and experiments (select with -m or -k)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERVICE_MARKER}(name): the spec's service a test without parametrization runs "
        "against (chaos experiment items)",
    )
    config.addinivalue_line(
        "markers",
        f"{E2E_MARKER}: uses a real cluster (set on every test whose fixtures include "
        f"`{CLUSTER_FIXTURE}`)",
    )
    config.addinivalue_line(
        "markers",
        f"{EXCLUSIVE_MARKER}: runs alone on the cluster; under pytest-xdist no other test "
        "uses the cluster meanwhile (node faults, component restarts)",
    )
    config.addinivalue_line(
        "markers",
        f"{CPU_MARKER}: measures CPU-driven behaviour (HPA, capacity); never runs at the same "
        "time as another such test",
    )
    for name, text in suite.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    # SIGTERM tears down and reverts faults too (xdist's workers carry it for the controller)
    controller = not hasattr(config, "workerinput") and bool(
        getattr(config.option, "numprocesses", None)
    )
    config.add_cleanup(terminate_as_interrupt(to_workers=controller))
    worker_input = getattr(config, "workerinput", {})
    try:
        config.stash[OPTIONS_KEY] = _checked_options(config)
        config.stash[RUN_KEY] = Run.from_environment(
            Path(config.getoption("reports_dir")),
            config.getoption("run_id") or worker_input.get("harness_run_id"),
        )
    except HarnessError as exc:
        raise pytest.UsageError(f"kube-harness: {exc}") from None
    config.stash[DIAGNOSTICS_KEY] = []
    # say()/step() from fixtures (cluster build, boot, images, deploys) reach the terminal
    # live instead of pytest's capture.
    config.add_cleanup(show_in_terminal(config))


def _checked_options(config: pytest.Config) -> ClusterOptions:
    """The cluster asked for, with bad counts and a bad cluster name refused before anything
    runs, not when the first test that needs them starts.

    Raises:
        InvalidConfiguration: naming the option and the fix.
    """
    repeat, load_workers = config.getoption("repeat"), config.getoption("load_workers")
    if repeat < 1:
        raise InvalidConfiguration(
            f"--repeat needs N >= 1, not {repeat}", fix="give how many times each test runs"
        )
    if load_workers is not None and not 0 <= load_workers <= MAX_LOAD_WORKERS:
        raise InvalidConfiguration(
            f"--load-workers={load_workers} is not a worker count",
            fix=f"give 0 (one Locust process) to {MAX_LOAD_WORKERS} (a master and N workers)",
        )
    return _cluster_options(config)  # checks --cluster-name, --cluster-workers


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # xdist: every worker shares the controller's run
    node.workerinput["harness_run_id"] = node.config.stash[RUN_KEY].run_id


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Scenarios asking for `service_spec` run once per service of the resilience spec, and
    `--repeat N` times each."""
    if "service_spec" not in metafunc.fixturenames:
        return
    spec = _resilience_spec(metafunc.config)
    metafunc.parametrize("service_spec", spec.services, ids=[s.name for s in spec.services])
    repeat = metafunc.config.getoption("repeat")
    if repeat > 1:
        metafunc.fixturenames.append(REPEAT_FIXTURE)
        metafunc.parametrize(
            REPEAT_FIXTURE, range(1, repeat + 1), ids=_repeat_ids(repeat), indirect=True
        )


def _repeat_ids(repeat: int) -> list[str]:
    return [f"run{i}of{repeat}" for i in range(1, repeat + 1)]


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
            _resilience_spec(config)
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
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`e2e` on every test whose fixtures reach the run's cluster, so `-m "not e2e"` is the
    unit tier without a list kept by hand; markers by area: the built-in scenarios' `hpa`,
    `probes`, ..., experiments' `chaos`."""
    for item in items:
        if CLUSTER_FIXTURE in getattr(item, "fixturenames", ()):
            item.add_marker(E2E_MARKER)
        name = "chaos" if isinstance(item, ExperimentItem) else suite.area(item.path)
        if name:
            item.add_marker(name)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Chaos Toolkit experiments under scenarios/**/experiments/ (the rootdir's or the
    built-in suite's, or under a folder named `experiments` given on the command line) become
    test items."""
    if not _in_experiments_folder(file_path, parent.config):
        return None
    # Imported here: chaoslib is only loaded by runs that collect experiments.
    from harness.chaos.experiment import SUFFIXES

    return (
        ExperimentFile.from_parent(parent, path=file_path) if file_path.suffix in SUFFIXES else None
    )


def _in_experiments_folder(path: Path, config: pytest.Config) -> bool:
    folders = [folder for folder in path.parents if folder.name == "experiments"]
    if not folders:
        return False
    scenarios = config.rootpath / "scenarios"
    given = {(config.invocation_params.dir / arg.split("::")[0]).resolve() for arg in config.args}
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
            service = experiment_service(_resilience_spec(self.config), settings)
        except HarnessError as exc:
            raise self.CollectError(f"kube-harness: {exc}") from None
        repeat = self.config.getoption("repeat")
        ids = (
            [service.name] if repeat == 1 else [f"{service.name}-{i}" for i in _repeat_ids(repeat)]
        )
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
        _fail_on_harness_error(exc)
    judge(evidence, test_report_dir)


def _resilience_spec(config: pytest.Config) -> ResilienceSpec:
    if SPEC_KEY not in config.stash:  # validated once, at collection, before anything runs
        config.stash[SPEC_KEY] = read_spec(config.getoption("resilience_spec"), config.rootpath)
    return config.stash[SPEC_KEY]


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.stash[RUN_KEY]
    lines = [f"kube-harness: run {run.run_id}, reports in {run.directory}"]
    if BUILTIN_SUITE_KEY in config.stash:
        lines.append(f"kube-harness: built-in suite {suite.SCENARIOS}")
    return lines


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    item.stash.setdefault(PHASE_REPORTS_KEY, {})[report.when] = report
    return report


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    bundles = config.stash.get(DIAGNOSTICS_KEY, [])
    if bundles:
        terminalreporter.write_sep("-", "kube-harness diagnostics")
        for path in bundles:
            terminalreporter.write_line(f"  {path}")


def _fail_on_harness_error(exc: HarnessError) -> None:
    pytest.fail(f"kube-harness: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def harness_run(request: pytest.FixtureRequest) -> Run:
    """This run's id and report folder (shared by all xdist workers)."""
    return request.config.stash[RUN_KEY]


def _cluster_options(config: pytest.Config) -> ClusterOptions:
    opt = config.getoption
    name, kubeconfig = opt("cluster_name"), opt("kubeconfig")
    return ClusterOptions(
        name=DEFAULT_CLUSTER_NAME if name == PYTEST_KIND_DEFAULT_NAME else name,
        workers=opt("cluster_workers"),
        kubeconfig=Path(kubeconfig) if kubeconfig else None,
        context=opt("cluster_context"),
        node_image=opt("kind_image"),
        allow_chaos=opt("allow_chaos_on_existing"),
    )


@pytest.fixture(scope="session")
def cluster_options(request: pytest.FixtureRequest) -> ClusterOptions:
    """The cluster asked for on the command line."""
    return request.config.stash[OPTIONS_KEY]


@pytest.fixture(scope="session")
def cluster_selection(request: pytest.FixtureRequest, cluster_options: ClusterOptions) -> Selection:
    """Which provider this run uses and why (option, environment or detection)."""
    try:
        return select_provider(
            request.config.getoption("cluster_provider"), kubeconfig=cluster_options.kubeconfig
        )
    except HarnessError as exc:
        _fail_on_harness_error(exc)
        raise


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest,
    harness_run: Run,
    cluster_selection: Selection,
    cluster_options: ClusterOptions,
) -> ClusterProvider:
    """The run's cluster, created (or reused) and Ready, with no fault a killed run left.

    Under pytest-xdist every worker asks for it; the first creates it under a file lock and
    the others reuse it. It is deleted once, by the main process at the end of the run,
    unless --keep-cluster is given.
    """
    try:
        provider = make_provider(cluster_selection.name, cluster_options)
        lock = lock_file(f"cluster-{cluster_options.name}.lock")
        with file_lock(lock):
            provider.create()
        provider.wait_ready()
        with file_lock(lock):  # one xdist worker reverts; the others find nothing left
            from harness.chaos.faults import revert_orphans

            revert_orphans(provider)
    except HarnessError as exc:
        _fail_on_harness_error(exc)
        raise
    active_cluster.record(
        active_cluster.ActiveCluster(
            provider.name, cluster_options.name, str(provider.kubeconfig())
        )
    )
    _run_cluster_file(harness_run).parent.mkdir(parents=True, exist_ok=True)
    _run_cluster_file(harness_run).write_text(provider.name)
    return provider


@pytest.fixture(autouse=True)
def _cluster_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Share the run's cluster between pytest-xdist workers safely.

    A test that uses the cluster holds a shared lock for its whole setup, call and teardown;
    one marked `exclusive_cluster` holds it alone (nothing else runs on the cluster meanwhile),
    and one marked `cpu_sensitive` also holds the CPU lock, so that no two HPA or capacity
    measurements overlap. Without xdist every lock is free at once.
    """
    node = request.node
    exclusive = node.get_closest_marker(EXCLUSIVE_MARKER) is not None
    if "cluster" not in request.fixturenames and not exclusive:
        yield
        return
    name = request.getfixturevalue("cluster_options").name
    with ExitStack() as held:
        # A pytest run by a test of another (an example suite) gets its turn from that test:
        # waiting for the lock its parent holds would wait forever.
        if os.environ.get(TURN_HELD_ENV) != name:
            held.enter_context(file_lock(lock_file(f"use-{name}.lock"), shared=not exclusive))
        if node.get_closest_marker(CPU_MARKER) is not None:
            held.enter_context(file_lock(lock_file(f"cpu-{name}.lock")))
        yield


def _run_cluster_file(run: Run) -> Path:
    """Where a run notes which provider brought its cluster up, for the final teardown."""
    return cache_dir() / "runs" / run.run_id / "cluster-provider"


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """After every other sessionfinish (so pytest's JUnit XML exists): the run's report, then
    the cluster's teardown. xdist workers leave both to the controller."""
    result = yield
    if not hasattr(session.config, "workerinput"):
        try:
            _write_report(session.config)
        finally:
            _tear_down_cluster(session.config)
    return result


def _write_report(config: pytest.Config) -> None:
    run, xml = config.stash[RUN_KEY], config.option.xmlpath  # xmlpath: --junitxml
    if not run.directory.is_dir() and not xml:
        return  # nothing recorded and no JUnit asked for: a plain unit-test session
    files = write_report(
        run.directory,
        history=earlier_runs(run.reports_root, run.directory),
        junit_xml=Path(xml) if xml else None,
    )
    update_latest(run.reports_root, files.directory)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    reporter.ensure_newline()
    reporter.write_sep("-", f"kube-harness report: {files.status}")
    try:
        screenshot(files.html, files.directory / SCREENSHOT_FILE)
    except HarnessError as exc:
        reporter.write_line(f"  no screenshot: {exc.message}")
    for path in (files.html, files.markdown, files.json):
        reporter.write_line(f"  {path}")
    for problem in files.problems:
        reporter.write_line(f"  missing or unreadable: {problem}")


def _tear_down_cluster(config: pytest.Config) -> None:
    marker = _run_cluster_file(config.stash[RUN_KEY])
    if not marker.exists():
        return
    provider_name = marker.read_text()
    shutil.rmtree(marker.parent, ignore_errors=True)
    if config.getoption("keep_cluster"):
        return
    options = config.stash[OPTIONS_KEY]
    provider = make_provider(provider_name, options)
    if provider.capabilities.creates_clusters:
        delete_cluster(provider)


@pytest.fixture(scope="session")
def kube_api(request: pytest.FixtureRequest, cluster: ClusterProvider) -> Iterator[Kube]:
    """API clients for the session's cluster (`kube_api.core`, `kube_api.apps`,
    `kube_api.autoscaling`...); not `kube`, which is kubetest's fixture."""
    api = Kube(cluster.kubeconfig(), request.config.getoption("cluster_context"))
    request.config.hook.pytest_harness_cluster_ready(cluster=cluster, kube=api)
    yield api
    api.close()


@pytest.fixture
def node_lifecycle(cluster: ClusterProvider) -> NodeLifecycle:
    """The cluster's node stop/start ability; skips the test where the provider lacks it."""
    if not isinstance(cluster, NodeLifecycle):
        pytest.skip(f"the {cluster.name} provider cannot stop and start nodes")
    return cluster


@pytest.fixture
def test_report_dir(request: pytest.FixtureRequest, harness_run: Run) -> Path:
    """reports/<run-id>/<test-id>/ for this test's own output (created on first use)."""
    path = harness_run.test_directory(request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def load_image(cluster: ClusterProvider) -> str:
    """The load image (Locust and the harness's recorder from this venv), built on this
    machine and loaded into the run's cluster: for load from the cluster."""
    return provide_load_image(cluster)


@pytest.fixture
def load(request: pytest.FixtureRequest, test_report_dir: Path) -> Iterator[Load]:
    """Locust load against a URL: `with load.run(url, Ramp(...)) as run: ...; run.result()`.

    Every run keeps Locust's CSV/HTML output and its event record in the test's report folder;
    a run still going when the test ends is stopped.
    """

    def site() -> ClusterSite:  # the cluster's fixtures only when load runs there
        return ClusterSite(
            request.getfixturevalue("kube_api"),
            request.getfixturevalue("namespace"),
            request.getfixturevalue("load_image"),
        )

    with Load(
        test_report_dir,
        workers=request.config.getoption("load_workers"),
        placement=request.config.getoption("load_placement"),
        cluster_site=site,
    ) as runs:
        yield runs


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest, kube_api: Kube, cluster: ClusterProvider, harness_run: Run
) -> Iterator[str]:
    """A fresh namespace for this test, labelled as the harness's; deleted afterwards.

    When the test fails, a diagnostics bundle is written to
    reports/<run-id>/<test-id>/diagnostics/ first; with --keep-failed-namespaces the
    namespace is then kept for inspection.
    """
    name = namespace_name(harness_run.run_id)
    create_namespace(kube_api, name, run_id=harness_run.run_id, test=request.node.nodeid)
    yield name
    phases = request.node.stash.get(PHASE_REPORTS_KEY, {})
    failed = any(report.failed for report in phases.values())
    try:
        if failed:
            dest = harness_run.test_directory(request.node.nodeid) / "diagnostics"
            collect_diagnostics(kube_api, name, dest, cluster)
            request.config.hook.pytest_harness_collect_diagnostics(
                kube=kube_api, namespace=name, dest=dest
            )
            request.config.stash[DIAGNOSTICS_KEY].append(dest)
    finally:  # diagnostics that break (an API that stopped answering) keep nothing behind
        if not (failed and request.config.getoption("keep_failed_namespaces")):
            delete_namespace(kube_api, name)


@pytest.fixture(scope="session")
def resilience_spec(request: pytest.FixtureRequest) -> ResilienceSpec:
    """The validated resilience spec (--resilience-spec, default: the demo service's)."""
    return _resilience_spec(request.config)


@pytest.fixture
def service_spec(request: pytest.FixtureRequest, resilience_spec: ResilienceSpec) -> ServiceSpec:
    """The service named by the test's `harness_service` marker, else the spec's first.

    Scenario functions that ask for `service_spec` are parametrized with every service
    instead (pytest_generate_tests), which takes precedence over this fixture.
    """
    marker = request.node.get_closest_marker(SERVICE_MARKER)
    return resilience_spec.service(marker.args[0]) if marker else resilience_spec.services[0]


@pytest.fixture(scope="session")
def service_images(cluster: ClusterProvider, resilience_spec: ResilienceSpec) -> list[Path]:
    """The images the spec asks the harness to build, built and loaded into the cluster."""
    try:
        return provide_images(cluster, resilience_spec)
    except HarnessError as exc:
        _fail_on_harness_error(exc)
        raise


@pytest.fixture
def timeline(kube_api: Kube, namespace: str, test_report_dir: Path) -> Iterator[TimelineRecorder]:
    """Records the test namespace's pods, workloads, HPAs, endpoints, events and the nodes to
    reports/<run-id>/<test-id>/timeline.jsonl; `timeline.mark(...)` adds the test's own events."""
    with TimelineRecorder(kube_api, namespace, test_report_dir / "timeline.jsonl") as recorder:
        yield recorder


@pytest.fixture
def deployed(
    request: pytest.FixtureRequest,
    cluster: ClusterProvider,
    kube_api: Kube,
    namespace: str,
    service_spec: ServiceSpec,
    service_images: list[Path],
    timeline: TimelineRecorder,
) -> Iterator[Deployed]:
    """The spec's service deployed into the test namespace and rolled out; removed afterwards."""
    try:
        placement = request.config.getoption("load_placement") or service_spec.load.placement
        service = deploy_service(
            cluster, kube_api, namespace, service_spec, load_placement=placement
        )
    except HarnessError as exc:
        _fail_on_harness_error(exc)
        raise
    timeline.mark("deployed", base_url=service.base_url)
    yield service
    service.teardown()
