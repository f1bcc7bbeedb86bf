"""The ledger: every fault in place right now, written down so that it can always be reverted.

A fault is added before it changes anything and removed once it is undone, so a run that
was killed half-way leaves a record that `harness chaos revert` (or `revert_all`) works
from. One JSON-lines file per cluster; pytest-xdist workers and a second `harness` process
share it, so every change is made under a file lock and written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import InvalidConfiguration
from harness.locks import file_lock
from harness.paths import cache_dir


def ledger_path(cluster_name: str) -> Path:
    """Where the ledger of one cluster lives."""
    return cache_dir() / "chaos" / f"{cluster_name}.jsonl"


@dataclass(frozen=True)
class Injected:
    """One fault in place.

    Attributes:
        id: short unique id; the fault's marker is `kube-harness-chaos-<id>`.
        fault: the fault's name ("cpu_hog", "partition_pod", "drain", ...).
        cluster: name of the cluster it was injected into.
        namespace: the harness namespace it was injected for.
        node: the node it lives on, where it has one.
        target: what it hits ("pod/container", a pod, a node, a component).
        undo: whatever its revert needs (marker, pod sandbox pid, node, component...).
        started: when it was injected (seconds since the epoch).
    """

    id: str
    fault: str
    cluster: str
    namespace: str | None
    node: str | None
    target: str | None
    undo: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0

    def describe(self) -> str:
        """One line for people: what, where and since when."""
        where = " ".join(
            f"{label} {value}"
            for label, value in (
                ("on", self.target),
                ("node", self.node),
                ("in", self.namespace),
            )
            if value
        )
        return f"{self.fault} {self.id} {where}".strip()


class Ledger:
    """The pending faults of one cluster, in a JSON-lines file.

    Args:
        cluster_name: the cluster whose faults these are.
        path: the file (default: `ledger_path(cluster_name)`).

    Example:
        >>> ledger = Ledger("kube-harness")                           # doctest: +SKIP
        >>> [i.describe() for i in ledger.pending(namespace="kh-1")]  # doctest: +SKIP
        ['cpu_hog 1a2b3c on demo-x/demo node kube-harness-node in kh-1']
    """

    def __init__(self, cluster_name: str, path: Path | None = None) -> None:
        self.cluster_name = cluster_name
        self.path = path or ledger_path(cluster_name)

    def add(self, injected: Injected) -> None:
        """Record a fault (replacing an entry with the same id)."""
        with self._locked() as entries:
            entries[:] = [e for e in entries if e.id != injected.id] + [injected]

    def remove(self, id: str) -> None:
        """Forget a fault once reverted; an id that is not there is not an error."""
        with self._locked() as entries:
            entries[:] = [e for e in entries if e.id != id]

    def pending(self, *, namespace: str | None = None, fault: str | None = None) -> list[Injected]:
        """Faults in place, oldest first, optionally only one namespace's or one kind."""
        return [
            e
            for e in self._read()
            if (namespace is None or e.namespace == namespace)
            and (fault is None or e.fault == fault)
        ]

    @contextmanager
    def _locked(self) -> Iterator[list[Injected]]:
        """Read, let the caller change the list, write it back: all under the lock."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            yield entries
            self._write(entries)

    def _read(self) -> list[Injected]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        entries = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(Injected(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise InvalidConfiguration(
                    f"{self.path}:{number} is not a chaos ledger entry ({exc})",
                    fix="fix or delete that line; `harness chaos revert` lists what the "
                    "other lines still hold",
                ) from None
        return entries

    def _write(self, entries: list[Injected]) -> None:
        """Replace the file in one step, so a reader never sees half of it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp: Path | None = None
        try:
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=f".{self.path.name}.", delete=False
            ) as handle:
                temp = Path(handle.name)
                handle.writelines(json.dumps(asdict(e), sort_keys=True) + "\n" for e in entries)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            if temp is not None:
                temp.unlink(missing_ok=True)
            raise
