"""The one wait primitive every part of the harness uses.

A condition is a function called repeatedly. It returns `Pending("what it saw")` while the
thing is not there yet, any other value once it is (that value is what `wait_for` returns),
or raises `WaitAborted` when the state can never become good, so that failures surface in
seconds instead of at the timeout.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from harness.errors import WaitTimeout

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
DEFAULT_INTERVAL = 0.5


@dataclass(frozen=True)
class Pending:
    """Returned by a condition that is not met yet, with the state it observed."""

    state: str


def wait_for(
    condition: Callable[[], T | Pending],
    *,
    what: str,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    transient: tuple[type[BaseException], ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `condition` until it returns something other than `Pending`.

    Args:
        condition: returns `Pending(state)` to keep waiting, anything else to finish.
        what: a phrase for error messages ("deployment demo to be available").
        timeout: seconds before giving up (default 60).
        interval: seconds between calls (default 0.5).
        transient: exception types treated as "not yet" (e.g. connection refused while an
            API server starts); their message becomes the last state.

    Returns:
        The condition's first non-`Pending` result.

    Raises:
        WaitTimeout: with the last state seen, when `timeout` passes.
        WaitAborted: raised by the condition itself, passed through untouched.

    Example:
        >>> wait_for(lambda: 42, what="the answer")
        42
    """
    deadline = clock() + timeout
    last_state = "not checked yet"
    while True:
        try:
            outcome = condition()
        except transient as exc:
            outcome = Pending(f"{type(exc).__name__}: {exc}")
        if not isinstance(outcome, Pending):
            return outcome
        last_state = outcome.state
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, last_state)
        sleep(min(interval, remaining))
