"""Changes the harness makes to this machine outside its own folders: recorded before they
are made, and undone when the last of their owners lets go.

A kernel switch (sysctl) or a system file can be needed by several owners at once (a local
cluster, `harness kind prepare`'s Docker): the record keeps each target's original state and
who holds it, and `release(owner)` puts back only what no other owner still holds. The record
lives in /var/lib/kube-harness (one per machine), so a later process (`harness cluster
down`, `harness kind unprepare`) undoes what an earlier one did.

Example:
    >>> set_sysctls({"net/ipv4/ip_forward": "1"}, "local:kube-harness")  # doctest: +SKIP
    >>> release("local:kube-harness")                                    # doctest: +SKIP
    ['net.ipv4.ip_forward back to 0']
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import InvalidConfiguration
from harness.locks import file_lock

PROC_SYS = Path("/proc/sys")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# One record per machine, whatever cache folder or HOME a run uses: owners in different
# caches must see each other to know who still needs a switch.
STATE_DIR = Path("/var/lib/kube-harness")
SYSCTL = "sysctl:"
FILE = "file:"
PACKAGE = "package:"
SERVICE = "service:"


def _record_file() -> Path:
    return STATE_DIR / "host-changes.json"


def _backups() -> Path:
    return STATE_DIR / "host-backups"


def _boot() -> str:
    return BOOT_ID.read_text().strip() if BOOT_ID.exists() else ""


@contextmanager
def _record(*, write: bool = True) -> Iterator[dict[str, Any]]:
    """The record, read (and written back, unless `write` is False) under its lock.

    Kernel switches recorded in an earlier boot are dropped: the kernel forgot them, and
    putting back a value from before the reboot would undo what booted since (Docker's
    forwarding).
    """
    path = _record_file()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with file_lock(STATE_DIR / "host-changes.lock"):
        try:
            record = json.loads(path.read_text()) if path.exists() else {}
        except ValueError as exc:
            raise InvalidConfiguration(
                f"the record of this machine's changes {path} is damaged ({exc})",
                fix="compare it with the machine by hand, then delete it",
            ) from None
        boot = _boot()
        for target in [t for t, e in record.items() if t.startswith(SYSCTL)]:
            if record[target].get("boot", boot) != boot:
                del record[target]
        yield record
        if write:
            partial = path.with_name(path.name + ".partial")
            partial.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            partial.replace(path)


def _hold(record: dict[str, Any], target: str, owner: str, original: Any) -> None:
    entry = record.setdefault(target, {"original": original, "owners": []})
    if owner not in entry["owners"]:
        entry["owners"].append(owner)


def _sysctl_path(key: str) -> Path:
    return PROC_SYS / key


def set_sysctls(changes: Mapping[str, str], owner: str, *, hold: Iterable[str] = ()) -> None:
    """Set kernel switches (e.g. {"net/ipv4/ip_forward": "1"}) for `owner`, each one's
    original recorded first (one record write, under one lock).

    `hold`: switches to record as they are now without changing them, for those a program
    the owner starts changes (kube-proxy's route_localnet).
    """
    with _record() as record:
        for key in [*changes, *hold]:
            _hold(record, SYSCTL + key, owner, _sysctl_path(key).read_text().strip())
            record[SYSCTL + key].setdefault("boot", _boot())
    # After the record is written: a run killed between the two leaves a recorded original,
    # never a change without one.
    for key, value in changes.items():
        _sysctl_path(key).write_text(value)


def hold_sysctls(keys: Iterable[str], owner: str) -> None:
    """Record kernel switches as they are now for `owner`, without changing them: it needs
    them to stay as they are, or starts a program that changes them."""
    set_sysctls({}, owner, hold=keys)


def back_up_file(path: Path, owner: str) -> None:
    """Keep `path`'s original (or that it did not exist) before `owner` changes it."""
    with _record() as record:
        target = FILE + str(path)
        original = None
        if target not in record and path.exists():
            _backups().mkdir(parents=True, exist_ok=True)
            original = str(_backups() / f"{secrets.token_hex(4)}-{path.name}")
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
    with _record(write=False) as record:
        return sorted(t for t, entry in record.items() if owner in entry["owners"])


def release(owner: str) -> list[str]:
    """Let go of everything `owner` holds; put back what nobody else holds. Returns what
    was put back, in words.

    Each change is put back on its own: one that fails stays recorded (with `owner`, to be
    tried again) and is said, and the others are still put back.
    """
    restored = []
    with _record() as record:
        for target in sorted(record):
            entry = record[target]
            if owner not in entry["owners"]:
                continue
            if len(entry["owners"]) > 1:
                entry["owners"].remove(owner)
                continue
            try:
                said = _restore(target, entry["original"])
                restored += [said] if said else []
            except OSError as exc:
                restored.append(f"could not put back {target} ({exc}); kept to try again")
                continue
            del record[target]
    return restored


def _restore(target: str, original: str | None) -> str | None:
    if target.startswith(SERVICE):
        return f"{target.removeprefix(SERVICE)} stopped (it was not running before)"
    if target.startswith(PACKAGE):
        name = target.removeprefix(PACKAGE)
        return f"{name} stays installed: `apt-get remove {name}` removes it if nothing uses it"
    if target.startswith(SYSCTL):
        key = target.removeprefix(SYSCTL)
        if not _sysctl_path(key).exists():  # its module is unloaded: the switch is gone
            return f"{key.replace('/', '.')} is gone (its kernel module was unloaded)"
        if _sysctl_path(key).read_text().strip() == str(original):
            return None  # nothing to say: it is as it was
        _sysctl_path(key).write_text(str(original))
        return f"{key.replace('/', '.')} back to {original}"
    path = Path(target.removeprefix(FILE))
    if original is None:
        path.unlink(missing_ok=True)
        return f"{path} removed (it did not exist before)"
    if Path(original).exists():  # gone: copied back already, by a release cut short after it
        shutil.copy2(original, path)
        os.unlink(original)
    return f"{path} restored"
