"""Where the harness keeps what outlives a run: built binaries and images, locks, the chaos
ledger, the active cluster's record.

One folder, `$HARNESS_CACHE_DIR` when set (read at each call, so a test or a CI job can point
the harness at an empty one), else `~/.cache/kube-harness` of the home the process started
with (pytester changes HOME inside a test; the cluster that test runs on stays where it was).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_DIR_ENV = "HARNESS_CACHE_DIR"
HOME_CACHE_DIR = Path.home() / ".cache" / "kube-harness"


def cache_dir() -> Path:
    """The harness's cache folder."""
    return Path(os.environ.get(CACHE_DIR_ENV) or HOME_CACHE_DIR)


def lock_file(name: str) -> Path:
    """The lock file `name` (e.g. "cluster-kube-harness.lock") of the harness's shared locks:
    runs on one machine take turns through these, whichever checkout they come from."""
    return cache_dir() / "locks" / name
