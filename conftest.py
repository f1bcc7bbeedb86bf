"""Root conftest: a checkout works without `pip install -e .`.

The plugin normally loads through its `pytest11` entry point; from a bare checkout it is
loaded from here instead (never twice).
"""

from importlib.metadata import entry_points

_installed = any(ep.value == "harness.plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _installed else ["harness.plugin"]
