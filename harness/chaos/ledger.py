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

from harness.locks import file_lock
from harness.paths import cache_dir
from harness.processes import process_alive
from harness.progress import say


def ledger_path(cluster_name: str) -> Path:
    """Where the ledger of one cluster lives."""
    return cache_dir() / "chaos" / f"{cluster_name}.jsonl"


def clusters_with_faults() -> list[str]:
    """The clusters whose ledger holds anything (a fault, or a damaged line)."""
    folder = ledger_path("-").parent
    return (
        sorted(p.stem for p in folder.glob("*.jsonl") if p.stat().st_size)
        if folder.is_dir()
        else []
    )


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
        owner: the process that injected it and reverts it (`this_process()`); "" from a
            harness that did not record it.
        cluster_uid: the uid of that cluster's kube-system namespace (`cluster_uid`), which
            tells it from another cluster of the same name; "" from a harness that did not
            record it.
    """

    id: str
    fault: str
    cluster: str
    namespace: str | None
    node: str | None
    target: str | None
    undo: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0
    owner: str = ""
    cluster_uid: str = ""

    @property
    def orphaned(self) -> bool:
        """Whether the process that injected it is gone (killed before it could revert)."""
        return not process_alive(self.owner)

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

    def clear(self) -> list[Injected]:
        """Forget every fault, damaged lines included (the cluster that held them is gone);
        return the entries that were pending."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            entries, _ = self._read()
            self.path.unlink(missing_ok=True)
        return entries

    def pending(self, *, namespace: str | None = None, fault: str | None = None) -> list[Injected]:
        """Faults in place, oldest first, optionally only one namespace's or one kind.

        A damaged line does not hide the others (they can still be reverted): it is named
        in a warning each time, and kept in the file until someone deals with it.
        """
        entries, damaged = self._read()
        for number, _, problem in damaged:
            say(
                f"warning: {self.path}:{number} is not a chaos ledger entry ({problem}): the "
                "fault it recorded, if any, is not reverted by the harness; undo it by hand "
                "(`harness chaos revert` lists what the other lines hold), then delete the line"
            )
        return [
            e
            for e in entries
            if (namespace is None or e.namespace == namespace)
            and (fault is None or e.fault == fault)
        ]

    @contextmanager
    def _locked(self) -> Iterator[list[Injected]]:
        """Read, let the caller change the list, write it back: all under the lock."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            entries, damaged = self._read()
            yield entries
            self._write(entries, [line for _, line, _ in damaged])

    def _read(self) -> tuple[list[Injected], list[tuple[int, str, str]]]:
        """The entries, and the damaged lines: number, text and what is wrong with it."""
        try:
            lines = self.path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return [], []
        entries, damaged = [], []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(Injected(**json.loads(line)))
            except (ValueError, TypeError) as exc:
                damaged.append((number, line, str(exc)))
        return entries, damaged

    def _write(self, entries: list[Injected], damaged: list[str]) -> None:
        """Replace the file in one step, so a reader never sees half of it; damaged lines
        are kept, after the entries."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp: Path | None = None
        try:
            with tempfile.NamedTemporaryFile(
                "w", dir=self.path.parent, prefix=f".{self.path.name}.", delete=False
            ) as handle:
                temp = Path(handle.name)
                handle.writelines(json.dumps(asdict(e), sort_keys=True) + "\n" for e in entries)
                handle.writelines(line + "\n" for line in damaged)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            if temp is not None:
                temp.unlink(missing_ok=True)
            raise
