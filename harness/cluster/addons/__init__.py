"""Addon manifests (CoreDNS, metrics-server) that any provider running its own control plane
can apply: `render(name, **values)` fills the ${PLACEHOLDERS} listed at the top of each file.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

ADDONS_DIR = Path(__file__).parent


def render(addon: str, **values: str) -> str:
    """The manifest of `addon` ("coredns", "metrics-server") with its placeholders filled.

    Raises:
        KeyError: a placeholder was not given a value.
    """
    return Template((ADDONS_DIR / f"{addon}.yaml").read_text()).substitute(values)
