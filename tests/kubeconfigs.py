"""Kubeconfig files for tests that need one but no cluster behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Port 1 on this machine: nothing listens, so a call that slips through fails at once.
NOWHERE = "https://127.0.0.1:1"


def kubeconfig(server: str = NOWHERE, **changes: Any) -> dict[str, Any]:
    """A one-context kubeconfig (context "ctx") for `server`; `changes` replace top-level keys."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
        **changes,
    }


def write_kubeconfig(path: Path, server: str = NOWHERE, **changes: Any) -> Path:
    """Write `kubeconfig(server, **changes)` to `path` and return `path`."""
    path.write_text(yaml.safe_dump(kubeconfig(server, **changes)))
    return path
