"""Debian root filesystems for images, built once with mmdebstrap and cached."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from harness.commands import run
from harness.errors import InvalidConfiguration
from harness.progress import step

SUITE = "bookworm"
# Documentation, man pages and translations are dead weight in a container image.
EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


def debian_rootfs(dest: Path, *, include: Sequence[str]) -> Path:
    """Build (or reuse) a Debian bookworm root filesystem tar with the `include` packages.

    The tar is reused when it exists and was built for the same package list (recorded in
    a sidecar file); it is written through a temporary name, so a killed build leaves no
    half-written tar behind.

    Raises:
        InvalidConfiguration: mmdebstrap is not installed.
        CommandFailed: mmdebstrap failed (e.g. a package name that does not exist).
    """
    packages = sorted(set(include))
    stamp = dest.with_name(dest.name + ".packages")
    if dest.is_file() and stamp.is_file() and stamp.read_text().split() == packages:
        return dest
    if not shutil.which("mmdebstrap"):
        raise InvalidConfiguration(
            "mmdebstrap is needed to build Debian root filesystems",
            fix="apt-get install mmdebstrap",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial.tar")
    argv: list[str] = ["mmdebstrap", "--variant=essential", "--quiet"]
    if packages:
        argv.append("--include=" + ",".join(packages))
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES]
    argv += [SUITE, str(partial)]
    with step(f"building Debian {SUITE} root filesystem with {', '.join(packages) or 'no extras'}"):
        try:
            run(argv, fix="check the package names (apt-cache policy NAME)", timeout=1800)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    partial.replace(dest)
    stamp.write_text("\n".join(packages) + "\n")
    return dest
