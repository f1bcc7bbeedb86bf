"""Progress lines for anything that takes more than a few seconds.

`say()` and `step()` format every line here, as `[harness] ...`, and hand it to the current
route. Outside pytest (the `harness` command) the route is standard error, kept out of the
command's output.

Under pytest the harness plugin routes the lines to the terminal while capture is suspended
(`show_in_terminal`), the way pytest's live logging does: a cold cluster build inside a
fixture would otherwise be silent for minutes. The lines are written live through the
terminal reporter (standard output), so they are never part of a test's captured output,
and a failing test still shows only its own. Exceptions:

- a test that reads its own output (`capsys`, `capfd`) gets the lines on standard error, as
  outside pytest, so it can assert on them;
- with `-qq` only `step()` lines are shown (each step's start and its end or failure), not
  the notes of `say()`; `-q` and louder show everything;
- a pytest-xdist worker's own terminal output goes nowhere, and xdist has no channel for
  live messages to the controller, so a worker writes to its standard error, which xdist
  leaves connected to the controller's terminal, with capture suspended and its id in front:
  `[gw0] [harness] ...`. These lines do not know where the controller's line is, so one may
  follow a row of progress dots.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pytest is only needed when the plugin routes lines; the CLI skips it
    import pytest

Sink = Callable[[str], None]
PREFIX = "[harness]"
# pytest's verbosity at and below which only step lines are shown (-qq).
STEPS_ONLY_VERBOSITY = -2


def say(message: str) -> None:
    """Show one progress line, on standard error or, under pytest, live in the terminal.

    Example: `say(f"{archive.name} is already in cluster {name}: not loaded again")`
    """
    _emit(message, step=False)


@contextmanager
def step(what: str) -> Iterator[None]:
    """Announce a step, then report how long it took or that it failed.

    Example: `with step(f"building {binary.name}"): ...`
    """
    _emit(f"{what} ...", step=True)
    started = time.monotonic()
    try:
        yield
    except BaseException:
        _emit(f"{what}: failed after {time.monotonic() - started:.1f}s", step=True)
        raise
    _emit(f"{what}: done in {time.monotonic() - started:.1f}s", step=True)


def _to_stderr(line: str) -> None:
    sys.stderr.write(f"{line}\n")  # one write: lines of xdist workers do not mix
    sys.stderr.flush()


@dataclass(frozen=True)
class _Route:
    sink: Sink
    steps_only: bool = False


_route = _Route(_to_stderr)


def _emit(message: str, *, step: bool) -> None:
    route = _route  # one read: another thread may change the route meanwhile
    if step or not route.steps_only:
        route.sink(f"{PREFIX} {message}")


def route_to(sink: Sink, *, steps_only: bool = False) -> Callable[[], None]:
    """Send every progress line to `sink` until the returned function is called.

    Returns: a function restoring the route before this one (routes nest, as pytester's
    in-process runs nest pytest sessions).
    """
    global _route
    before, _route = _route, _Route(sink, steps_only)

    def restore() -> None:
        global _route
        _route = before

    return restore


def show_in_terminal(config: pytest.Config) -> Callable[[], None]:
    """Route progress lines live to the terminal of the pytest run `config` belongs to.

    Returns: a function restoring the previous route, for `config.add_cleanup`.
    """
    return route_to(_PytestSink(config), steps_only=config.get_verbosity() <= STEPS_ONLY_VERBOSITY)


class _PytestSink:
    """Writes a line past pytest's capture: through the terminal reporter, or on a worker's
    standard error."""

    def __init__(self, config: pytest.Config) -> None:
        self.plugins = config.pluginmanager
        self.worker = getattr(config, "workerinput", {}).get("workerid")
        self.lock = threading.Lock()  # lines from threads (timers, parallel builds) stay whole

    def __call__(self, line: str) -> None:
        # Looked up per line: the reporter registers after the harness plugin configures.
        capture = self.plugins.get_plugin("capturemanager")
        reporter = self.plugins.get_plugin("terminalreporter")
        # The test reads its own output (capsys, capfd...) and may expect the lines there.
        # pytest has no public question for this; without the attribute, lines go live.
        if getattr(capture, "_capture_fixture", None) is not None:
            _to_stderr(line)
            return
        with self.lock, capture.global_and_fixture_disabled() if capture else nullcontext():
            if self.worker:
                _to_stderr(f"[{self.worker}] {line}")
            elif reporter is not None:
                reporter.write_line(line)
            else:  # -p no:terminal
                _to_stderr(line)
