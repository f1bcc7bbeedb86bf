"""SIGTERM taken as Ctrl-C: a run stopped by CI, systemd or `kill` reverts its faults and
tears down as one interrupted at the keyboard does.

Python's default for SIGTERM ends the process at once: no `finally`, no fixture teardown, so
an injected fault (an iptables rule, a cordon, a stopped kubelet) would stay until the next
run reverted it. SIGKILL cannot be caught; that case is `harness.chaos.faults.revert_orphans`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType

import psutil


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (handled everywhere a KeyboardInterrupt is)."""


def terminate_as_interrupt(*, to_workers: bool = False) -> Callable[[], None]:
    """Make SIGTERM raise `Terminated` (a KeyboardInterrupt) in the main thread, where
    SIGTERM still has its default action (a handler someone else installed is kept); return
    what undoes it.

    `to_workers`: pass SIGTERM on to this process's children instead (pytest-xdist's
    controller). Each worker then tears its test down and reports the interruption, which
    stops the session; raised in the controller, xdist would end its workers within
    seconds, cutting their teardowns (the faults' reverts) short.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        # Once: a second SIGTERM (the process group's and a parent's) must not cut the
        # teardown the first one started; SIGKILL still ends the process.
        signal.signal(signum, signal.SIG_IGN)
        if to_workers:
            for child in psutil.Process().children():
                with contextlib.suppress(psutil.Error):
                    child.send_signal(signum)
            return
        raise Terminated(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handle)

    def undo() -> None:
        if signal.getsignal(signal.SIGTERM) in (handle, signal.SIG_IGN):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return undo
