"""The unit tier (`make unit`) as a fresh machine without network, Go or the harness cache
would run it: its wall time, its summary line and its slowest tests.

It runs in new mount and network namespaces (root): only a loopback interface, an empty
folder over the Go toolchain and over ~/.cache/kube-harness, and an empty HARNESS_CACHE_DIR.
A test that reaches for any of them fails here instead of passing on a developer's machine.
Rendering a kustomization takes a kubectl: without Go or the cache, the one on PATH.

Usage: python benchmarks/bench_unit_tier.py [--workers 4] [--slowest 25] [PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.paths import HOME_CACHE_DIR

ROOT = Path(__file__).resolve().parents[1]
HIDDEN = [Path("/usr/local/go"), HOME_CACHE_DIR]
# `make unit`'s selection; a later -m in PYTEST_ARGS replaces it (-m "not e2e and not builds":
# its slow part too).
UNIT = ["tests", "-m", "not e2e and not builds and not slow", "-p", "no:cacheprovider"]


def isolated_command(pytest_args: list[str], empty: Path, cache: Path) -> list[str]:
    """`pytest_args` in new mount and network namespaces with `HIDDEN` covered up."""
    hide = [
        f"mount --bind {shlex.quote(str(empty))} {shlex.quote(str(path))}"
        for path in HIDDEN
        if path.is_dir()
    ]
    pytest = shlex.join([sys.executable, "-m", "pytest", *pytest_args])
    script = " && ".join(["ip link set lo up", *hide, f"HARNESS_CACHE_DIR={cache} {pytest}"])
    return ["unshare", "--mount", "--net", "--propagation", "private", "sh", "-c", script]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="pytest-xdist workers")
    parser.add_argument("--slowest", type=int, default=25, help="how many durations to print")
    args, extra = parser.parse_known_args()
    if os.geteuid() != 0:
        print("bench_unit_tier: needs root (mount and network namespaces)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="unit-tier-") as folder:
        empty, cache = Path(folder) / "empty", Path(folder) / "cache"
        empty.mkdir()
        pytest_args = [*UNIT, "-n", str(args.workers), f"--durations={args.slowest}", *extra]
        started = time.monotonic()
        done = subprocess.run(
            isolated_command(pytest_args, empty, cache),
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=30 * 60,
        )
        took = time.monotonic() - started
    out = done.stdout
    durations = out[out.find("slowest") - 20 :] if "slowest" in out else ""
    print(durations.split("\n=")[0].strip())
    summary = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(f"\nsummary: {summary[-1].strip('= ') if summary else '(none)'}")
    print(f"unit tier wall time (no network, no Go, empty cache): {took:.1f} s")
    if done.returncode:
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        print("\n".join(failed[:40]) or (out + done.stderr)[-3000:])
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
