"""Progress lines for anything that takes more than a few seconds."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str) -> None:
    """Print one progress line to standard error (kept out of command output)."""
    print(f"[harness] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(what: str) -> Iterator[None]:
    """Announce a step, then report how long it took or that it failed."""
    say(f"{what} ...")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"{what}: failed after {time.monotonic() - started:.1f}s")
        raise
    say(f"{what}: done in {time.monotonic() - started:.1f}s")
