"""Which cluster is active: recorded by `up` so later commands need no flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.errors import InvalidConfiguration
from harness.paths import cache_dir
from harness.user_files import read_json


def _active_file() -> Path:
    return cache_dir() / "active-cluster.json"


@dataclass(frozen=True)
class ActiveCluster:
    provider: str
    name: str
    kubeconfig: str
    context: str | None = None  # the kubeconfig's context (existing), None: its current one


def record(active: ActiveCluster) -> None:
    path = _active_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(active)))


def read() -> ActiveCluster | None:
    """The active cluster, or None when none is recorded.

    Raises:
        InvalidConfiguration: the record is damaged (taken for "no cluster", it hid the
            cluster's pending faults from `harness chaos revert`).
    """
    path = _active_file()
    if not path.exists():
        return None
    try:  # read strictly: a FIFO or /dev/zero in its place is refused, not read forever
        return ActiveCluster(**read_json(path, "active-cluster record"))
    except InvalidConfiguration as exc:
        problem = exc.message
    except TypeError as exc:  # not an object, or not these fields
        problem = f"active-cluster record {path}: {exc}"
    raise InvalidConfiguration(
        f"{problem}: the record is damaged",
        fix="run `harness cluster up` again (it reuses a running cluster and records it), "
        "or delete the file",
    )


def forget(name: str) -> None:
    """Forget `name` as the active cluster (a damaged record is forgotten too)."""
    try:
        current = read()
    except InvalidConfiguration:
        current = None
        _active_file().unlink(missing_ok=True)
    if current is not None and current.name == name:
        _active_file().unlink(missing_ok=True)
