"""SIGTERM taken as Ctrl-C: a run stopped by CI, systemd or `kill` reverts its faults and
tears down as one interrupted at the keyboard does.

Python's default for SIGTERM ends the process at once: no `finally`, no fixture teardown, so
an injected fault (an iptables rule, a cordon, a stopped kubelet) would stay until the next
run reverted it. SIGKILL cannot be caught; that case is `harness.chaos.faults.revert_orphans`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (handled everywhere a KeyboardInterrupt is)."""


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: a second SIGTERM (the process group's and a parent's) must not cut the teardown
    # the first one started; SIGKILL still ends the process.
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


def terminate_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM raise `Terminated` (a KeyboardInterrupt) in the main thread, where
    SIGTERM still has its default action (a handler someone else installed is kept); return
    what undoes it."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        return lambda: None
    signal.signal(signal.SIGTERM, _raise_interrupt)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) in (_raise_interrupt, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return undo
