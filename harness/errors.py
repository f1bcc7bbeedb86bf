"""The harness's exceptions: one root, split by when the problem is found.

`InvalidConfiguration` is raised before anything runs (bad option, bad spec, missing
prerequisite); everything else happens at run time. Every message says what to do next.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises on purpose.

    Args:
        message: what went wrong, naming the thing it went wrong with.
        fix: what the user can do about it (printed on its own line).
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if not fix else f"{message}\n  fix: {fix}")


class InvalidConfiguration(HarnessError):
    """Found before anything ran: options, specs, missing prerequisites."""


class ProviderUnavailable(InvalidConfiguration):
    """The chosen cluster provider cannot run on this machine."""


class NoProviderFits(InvalidConfiguration):
    """Auto-detection tried every provider and none can run here."""


class CommandFailed(HarnessError):
    """An external command (kind, docker, kubectl, ...) exited non-zero."""


class WaitTimeout(HarnessError):
    """A wait ran out of time; carries the last state it observed."""

    def __init__(self, what: str, timeout: float, last_state: str) -> None:
        self.what = what
        self.timeout = timeout
        self.last_state = last_state
        super().__init__(
            f"timed out after {timeout:g}s waiting for {what}; last seen: {last_state}"
        )


class WaitAborted(HarnessError):
    """A wait condition saw a state it can never recover from (e.g. ImagePullBackOff)."""
