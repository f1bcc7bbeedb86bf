"""Changes the harness makes to this machine outside its own folders: recorded before they
are made, and undone when the last of their owners lets go.

A kernel switch (sysctl) or a system file can be needed by several owners at once (a local
cluster, `harness kind prepare`'s Docker): the record keeps each target's original state and
who holds it, and `release(owner)` puts back only what no other owner still holds. The record
lives in the harness's cache folder, so a later process (`harness cluster down`, `harness
kind unprepare`) undoes what an earlier one did.

Example:
    >>> set_sysctl("net/ipv4/ip_forward", "1", owner="local:kube-harness")  # doctest: +SKIP
    >>> release("local:kube-harness")                                      # doctest: +SKIP
    ['net.ipv4.ip_forward back to 0']
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import InvalidConfiguration
from harness.locks import file_lock
from harness.paths import cache_dir, lock_file

PROC_SYS = Path("/proc/sys")
SYSCTL = "sysctl:"
FILE = "file:"
PACKAGE = "package:"
SERVICE = "service:"


def _record_file() -> Path:
    return cache_dir() / "host-changes.json"


def _backups() -> Path:
    return cache_dir() / "host-backups"


@contextmanager
def _record() -> Iterator[dict[str, Any]]:
    """The record, read and written back under the shared lock."""
    path = _record_file()
    with file_lock(lock_file("host-changes.lock")):
        try:
            record = json.loads(path.read_text()) if path.exists() else {}
        except ValueError as exc:
            raise InvalidConfiguration(
                f"the record of this machine's changes {path} is damaged ({exc})",
                fix="compare it with the machine by hand, then delete it",
            ) from None
        yield record
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        partial.replace(path)


def _hold(record: dict[str, Any], target: str, owner: str, original: Any) -> None:
    entry = record.setdefault(target, {"original": original, "owners": []})
    if owner not in entry["owners"]:
        entry["owners"].append(owner)


def _sysctl_path(key: str) -> Path:
    return PROC_SYS / key


def hold_sysctl(key: str, owner: str) -> None:
    """Record `key`'s value now as its original, held by `owner`, without changing it: for a
    switch a program the owner starts changes (kube-proxy's route_localnet, Docker's
    forwarding)."""
    with _record() as record:
        _hold(record, SYSCTL + key, owner, _sysctl_path(key).read_text().strip())


def set_sysctl(key: str, value: str, owner: str) -> None:
    """Set the kernel switch `key` (e.g. "net/ipv4/ip_forward") for `owner`, its original
    recorded first."""
    hold_sysctl(key, owner)
    _sysctl_path(key).write_text(value)


def back_up_file(path: Path, owner: str) -> None:
    """Keep `path`'s original (or that it did not exist) before `owner` changes it."""
    with _record() as record:
        target = FILE + str(path)
        original = None
        if target not in record and path.exists():
            _backups().mkdir(parents=True, exist_ok=True)
            original = str(_backups() / str(path).strip("/").replace("/", "_"))
            shutil.copy2(path, original)
        _hold(record, target, owner, original)


def note_package(name: str, owner: str) -> None:
    """Record that `owner` installed the Debian package `name` (left installed on release:
    other software may have come to use it; `release` says how to remove it)."""
    with _record() as record:
        _hold(record, PACKAGE + name, owner, None)


def note_service(name: str, owner: str) -> None:
    """Record that `owner` started the service `name`, which was not running (the owner
    stops it before it releases)."""
    with _record() as record:
        _hold(record, SERVICE + name, owner, "stopped")


def held_by(owner: str) -> list[str]:
    """What `owner` holds, as "sysctl:KEY", "file:PATH", "package:NAME", "service:NAME"."""
    with _record() as record:
        return sorted(t for t, entry in record.items() if owner in entry["owners"])


def release(owner: str) -> list[str]:
    """Let go of everything `owner` holds; put back what nobody else holds. Returns what
    was put back, in words."""
    restored = []
    with _record() as record:
        for target in sorted(record):
            entry = record[target]
            if owner not in entry["owners"]:
                continue
            entry["owners"].remove(owner)
            if entry["owners"]:
                continue
            del record[target]
            restored.append(_restore(target, entry["original"]))
    return restored


def _restore(target: str, original: str | None) -> str:
    if target.startswith(SERVICE):
        return f"{target.removeprefix(SERVICE)} stopped (it was not running before)"
    if target.startswith(PACKAGE):
        name = target.removeprefix(PACKAGE)
        return f"{name} stays installed: `apt-get remove {name}` removes it if nothing uses it"
    if target.startswith(SYSCTL):
        key = target.removeprefix(SYSCTL)
        _sysctl_path(key).write_text(str(original))
        return f"{key.replace('/', '.')} back to {original}"
    path = Path(target.removeprefix(FILE))
    if original is None:
        path.unlink(missing_ok=True)
        return f"{path} removed (it did not exist before)"
    shutil.copy2(original, path)
    os.unlink(original)
    return f"{path} restored"
