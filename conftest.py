"""Root conftest: a checkout works without `pip install -e .`, and destructive tests go last.

The plugin normally loads through its `pytest11` entry point; from a bare checkout it is
loaded from here instead (never twice). Installed, this file defines no `pytest_plugins` at
all: a run elsewhere that collects this checkout's scenarios as the built-in suite (an
editable install) loads it late, where pytest refuses that name.
"""

import pytest

from harness.plugin import E2E_MARKER
from harness.plugin.shared import loaded_by_entry_point

if not loaded_by_entry_point():
    pytest_plugins = ["harness.plugin"]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the e2e marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take this machine's one local cluster down and up again are end-to-end
    and run after every test that shares the run's cluster (a stable sort keeps the rest
    in order)."""
    for item in items:
        if item.get_closest_marker("cluster_lifecycle") is not None:
            item.add_marker(E2E_MARKER)
    items.sort(key=lambda item: item.get_closest_marker("cluster_lifecycle") is not None)
