"""A runc wrapper for machines whose capability bounding set lacks CAP_SYS_RESOURCE.

kind's nodes are `--privileged` containers: Docker asks runc for every capability, and
runc fails ("unable to apply caps") when the bounding set lacks one. It also refuses a
negative oomScoreAdj, which Docker sets for some containers, without CAP_SYS_RESOURCE.
This wrapper drops CAP_SYS_RESOURCE from the container's capability sets and raises a
negative oomScoreAdj to 0, then runs runc. It edits the bundle's config.json for `create`
and `run`, and the process file for `exec` (kind runs everything in a node through
`docker exec`). Nothing else changes, so a container gets exactly what it would get from
runc, minus what this machine cannot grant.

`harness kind prepare` installs this file as a script and registers it with Docker; it
uses nothing but the standard library because it runs under the system Python.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

MISSING_CAPABILITY = "CAP_SYS_RESOURCE"
CAPABILITY_SETS = ("bounding", "effective", "inheritable", "permitted", "ambient")
# runc's global options that take a value; the subcommand is the first other argument.
GLOBAL_OPTIONS_WITH_VALUE = ("--root", "--log", "--log-format", "--criu", "--rootless")
RUNC_CANDIDATES = ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc")


def relax_process(process: dict) -> dict:
    """`process` (an OCI process object) without CAP_SYS_RESOURCE and a negative oomScoreAdj."""
    capabilities = process.get("capabilities") or {}
    for name in CAPABILITY_SETS:
        if name in capabilities:
            capabilities[name] = [c for c in capabilities[name] if c != MISSING_CAPABILITY]
    if process.get("oomScoreAdj", 0) < 0:
        process["oomScoreAdj"] = 0
    return process


def relax_file(path: Path, *, spec: bool) -> None:
    """Rewrite a bundle's config.json (`spec`) or an exec process file in place."""
    document = json.loads(path.read_text())
    relax_process(document.setdefault("process", {}) if spec else document)
    path.write_text(json.dumps(document))


def _option(args: list[str], *names: str) -> str | None:
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def subcommand(args: list[str]) -> tuple[str, list[str]]:
    """The runc subcommand in `args` and the arguments after it ("" when there is none)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg, args[i + 1 :]
    return "", []


def file_to_relax(args: list[str]) -> tuple[Path, bool] | None:
    """The spec or process file runc will read for `args`, and whether it is a full spec."""
    command, rest = subcommand(args)
    if command in ("create", "run"):
        bundle = _option(rest, "--bundle", "-b") or os.getcwd()
        return Path(bundle) / "config.json", True
    if command == "exec":
        process = _option(rest, "--process", "-p")
        if process:
            return Path(process), False
    return None


def runc_path() -> str:
    for candidate in RUNC_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("runc") or "runc"


def main(argv: list[str]) -> None:
    args = argv[1:]
    target = file_to_relax(args)
    if target and target[0].is_file():
        relax_file(target[0], spec=target[1])
    runc = runc_path()
    os.execv(runc, [runc, *args])


if __name__ == "__main__":
    main(sys.argv)
