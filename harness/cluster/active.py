"""Which cluster is active: recorded by `up` so later commands need no flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.cluster.provider import CACHE_DIR

ACTIVE_FILE = CACHE_DIR / "active-cluster.json"


@dataclass(frozen=True)
class ActiveCluster:
    provider: str
    name: str
    kubeconfig: str


def record(active: ActiveCluster, path: Path = ACTIVE_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(active)))


def read(path: Path = ACTIVE_FILE) -> ActiveCluster | None:
    try:
        return ActiveCluster(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def forget(name: str, path: Path = ACTIVE_FILE) -> None:
    current = read(path)
    if current is not None and current.name == name:
        path.unlink(missing_ok=True)
