"""Faults the harness injects, each one reverted or self-healing by design."""

from harness.chaos.faults import NotInjectable, kill_container

__all__ = ["NotInjectable", "kill_container"]
