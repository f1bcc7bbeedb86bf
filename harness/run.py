"""A test run's identity and where its output goes: reports/<run-id>/<test-id>/."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

RUN_ID_ENV = "HARNESS_RUN_ID"


def new_run_id(now: float | None = None) -> str:
    """A sortable, DNS-label-safe run id: `20261123-011530-a1b2`."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(2)}"


def test_dir_name(nodeid: str) -> str:
    """A file-system-safe folder name for a pytest node id."""
    name = nodeid.replace("::", "__").replace("/", ".")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.")


@dataclass(frozen=True)
class Run:
    """One harness run: its id and its report folder."""

    run_id: str
    reports_root: Path

    @classmethod
    def from_environment(cls, reports_root: Path, run_id: str | None = None) -> Run:
        """Reuse the run id a parent process chose (xdist workers), else make one."""
        run_id = run_id or os.environ.get(RUN_ID_ENV) or new_run_id()
        # Absolute: child processes (Locust) write into it from their own working directory.
        return cls(run_id, reports_root.resolve())

    @property
    def directory(self) -> Path:
        return self.reports_root / self.run_id

    def test_directory(self, nodeid: str) -> Path:
        return self.directory / test_dir_name(nodeid)
