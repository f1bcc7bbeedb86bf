"""Processes named so that a later one with the same pid is not taken for them: what tells
whose a fault or a file is, and whether its owner still runs."""

from __future__ import annotations

import functools
import os
from pathlib import Path


def this_process() -> str:
    """This process as an owner (`process_named(os.getpid())`)."""
    return _named_once(os.getpid())


@functools.cache  # a process's start time never changes; a forked child has its own pid
def _named_once(pid: int) -> str:
    return process_named(pid)


def process_named(pid: int) -> str:
    """Process `pid` as an owner: `PID@START`, its start time telling it from a later process
    that got the same pid."""
    return f"{pid}@{_start_time(pid)}"


def process_alive(owner: str) -> bool:
    """Whether the process `this_process()` named in `owner` still runs ("" never does)."""
    pid, _, start = owner.partition("@")
    return pid.isdigit() and _start_time(int(pid)) == start


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat);
    "" when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]  # the name may hold spaces and parentheses
