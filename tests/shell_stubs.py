"""Run the harness's in-pod shell scripts here, under dash, with their commands stubbed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path


def run_script(
    script: str, folder: Path, *, stubs: Mapping[str, str], env: Mapping[str, str]
) -> tuple[list[str], str]:
    """`script` run by dash with each of `stubs` (name -> shell body) first on PATH, and
    /etc/resolv.conf read from `folder`: its output lines, and the stubbed commands it ran."""
    # dash, not busybox's sh: that one would run its own applets, not the stubs.
    assert shutil.which("dash"), "dash (Debian's /bin/sh) runs the pods' scripts here"
    calls = folder / "calls"
    for name, body in stubs.items():
        path = folder / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\n{body}\n')
        path.chmod(0o755)
    resolv = folder / "resolv.conf"
    resolv.write_text("search ns1.svc.cluster.local svc.cluster.local cluster.local lan\n")
    done = subprocess.run(
        ["dash", "-c", script.replace("/etc/resolv.conf", str(resolv))],
        env={"PATH": f"{folder}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.splitlines(), calls.read_text() if calls.exists() else ""
