"""The kube-harness pytest plugin: options, fixtures and hooks. The logic lives in the library.

Where to look: `options`, `cluster` (the run's cluster), `fixtures` (namespace, deployed,
timeline, load), `turns` (xdist), `collection` (experiments, the built-in suite, markers),
`report`, `shared` (stash keys and markers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import hooks, suite
from harness.errors import HarnessError
from harness.interrupt import terminate_as_interrupt
from harness.plugin.shared import (
    BUILTIN_SUITE_KEY,
    CLUSTER_FIXTURE,
    CPU_MARKER,
    DIAGNOSTICS_KEY,
    E2E_MARKER,
    EXCLUSIVE_MARKER,
    OPTIONS_KEY,
    PROMISES_MARKER,
    RUN_KEY,
    SERVICE_MARKER,
    TURN_HELD_ENV,
)
from harness.progress import show_in_terminal
from harness.run import Run

# The plugin's other parts, registered with it (an installed kube-harness is loaded by its
# entry point, `kube_harness`, as this module).
pytest_plugins = [
    "harness.plugin.options",
    "harness.plugin.cluster",
    "harness.plugin.turns",
    "harness.plugin.fixtures",
    "harness.plugin.collection",
    "harness.plugin.report",
]
__all__ = ["E2E_MARKER", "TURN_HELD_ENV"]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERVICE_MARKER}(name): the spec's service a test without parametrization runs "
        "against (chaos experiment items)",
    )
    config.addinivalue_line(
        "markers",
        f"{PROMISES_MARKER}(promise): a scenario runs only for the spec's services that make "
        "the promise, e.g. `hpa`, `slo.max_p95_ms` or `rollout.strategy=blue-green`",
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
    # Imported here: imported with this module, before pytest registers it as a plugin, it
    # could not have its asserts rewritten (PytestAssertRewriteWarning).
    from harness.plugin.options import checked_options

    worker_input = getattr(config, "workerinput", {})
    try:
        config.stash[OPTIONS_KEY] = checked_options(config)
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


def pytest_report_header(config: pytest.Config) -> list[str]:
    run = config.stash[RUN_KEY]
    lines = [f"kube-harness: run {run.run_id}, reports in {run.directory}"]
    if BUILTIN_SUITE_KEY in config.stash:
        lines.append(f"kube-harness: built-in suite {suite.SCENARIOS}")
    return lines
