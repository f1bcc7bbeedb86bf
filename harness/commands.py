"""Running external programs with errors that say what failed and what to do."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import CommandFailed


def run(
    argv: Sequence[str | Path],
    *,
    fix: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    capture: bool = True,
) -> str:
    """Run a command to completion and return its standard output.

    Raises:
        CommandFailed: non-zero exit, missing program or timeout; the message holds the
            command line and the tail of its standard error.
    """
    argv = [str(a) for a in argv]
    line = shlex.join(argv)
    try:
        done = subprocess.run(
            argv,
            env=dict(env) if env is not None else None,
            timeout=timeout,
            input=input,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            check=False,
        )
    except FileNotFoundError:
        raise CommandFailed(f"{argv[0]}: program not found (running {line})", fix=fix) from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{line}: no answer within {timeout:g}s", fix=fix) from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-15:]
        detail = "\n    ".join(tail)
        raise CommandFailed(f"{line} exited {done.returncode}:\n    {detail}", fix=fix)
    return done.stdout or ""
