"""A test run's identity and where its output goes: reports/<run-id>/<test-id>/."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InvalidConfiguration

RUN_ID_ENV = "HARNESS_RUN_ID"
# A run id names a folder under reports/ and under the cache (deleted at the end of the run)
# and starts every namespace name of the run: a DNS label, short enough to leave the
# namespace its random part.
RUN_ID = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")


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
        """Reuse the run id a parent process chose (xdist workers), else make one.

        Raises:
            InvalidConfiguration: the id is no DNS label of at most 40 characters (`..`, `/`).
        """
        run_id = run_id or os.environ.get(RUN_ID_ENV) or new_run_id()
        if not RUN_ID.fullmatch(run_id):
            raise InvalidConfiguration(
                f"run id {run_id!r} is not usable: it names folders and namespaces",
                fix="use 1 to 40 lowercase letters, digits and '-', starting and ending with a "
                "letter or digit (e.g. nightly-20261202), or leave it out for a generated one",
            )
        # Absolute: child processes (Locust) write into it from their own working directory.
        return cls(run_id, reports_root.resolve())

    @property
    def directory(self) -> Path:
        return self.reports_root / self.run_id

    def test_directory(self, nodeid: str) -> Path:
        return self.directory / test_dir_name(nodeid)
