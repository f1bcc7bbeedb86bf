"""Which cluster is active: recorded by `up` so later commands need no flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.paths import cache_dir


def _active_file() -> Path:
    return cache_dir() / "active-cluster.json"


@dataclass(frozen=True)
class ActiveCluster:
    provider: str
    name: str
    kubeconfig: str


def record(active: ActiveCluster) -> None:
    path = _active_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(active)))


def read() -> ActiveCluster | None:
    try:
        return ActiveCluster(**json.loads(_active_file().read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def forget(name: str) -> None:
    current = read()
    if current is not None and current.name == name:
        _active_file().unlink(missing_ok=True)
