"""`harness doctor`: what each provider needs on this machine, and the command that fixes it."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.cluster import DETECTION_ORDER, existing, kind, local

MIN_GO = (1, 24)


@dataclass(frozen=True)
class Check:
    """One prerequisite: met or not, what was seen, and how to meet it."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def system_packages() -> list[str]:
    text = resources.files("harness").joinpath("system-packages.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _package_installed(name: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", name], capture_output=True, text=True, check=False
    )
    return done.stdout.endswith("install ok installed")


def _go_check() -> Check:
    go = shutil.which("go")
    if not go:
        return Check(
            "Go toolchain",
            False,
            "no `go` on PATH (needed once, to build Kubernetes)",
            fix=f"install Go >= {MIN_GO[0]}.{MIN_GO[1]} from go.dev or your distribution",
        )
    out = subprocess.run([go, "version"], capture_output=True, text=True, check=False).stdout
    found = re.search(r"go(\d+)\.(\d+)", out)
    version = (int(found[1]), int(found[2])) if found else (0, 0)
    if version < MIN_GO:
        return Check(
            "Go toolchain", False, out.strip(), fix=f"install Go >= {MIN_GO[0]}.{MIN_GO[1]}"
        )
    return Check("Go toolchain", True, out.strip())


def local_checks() -> list[Check]:
    checks = [
        Check(
            "root",
            os.geteuid() == 0,
            f"uid {os.geteuid()}",
            fix="run as root (the local provider manages network devices and mounts)",
        ),
        _go_check(),
    ]
    missing = [p for p in system_packages() if not _package_installed(p)]
    checks.append(
        Check(
            "Debian packages",
            not missing,
            "all present" if not missing else f"missing: {' '.join(missing)}",
            fix=f"apt-get install -y {' '.join(missing)}",
        )
    )
    found = local.probe()
    checks.append(Check("local provider", found.ok, found.reason, found.fix))
    return checks


def kind_checks() -> list[Check]:
    found = kind.probe()
    binary = kind.find_kind()
    return [
        Check("Docker", found.ok, found.reason, found.fix),
        Check(
            "kind binary",
            True,
            str(binary)
            if binary
            else f"not here: pytest-kind downloads kind {kind.kind_version()} on first use "
            "(offline: harness kind prepare builds it)",
        ),
    ]


def existing_checks(kubeconfig: Path | None) -> list[Check]:
    path = kubeconfig or existing.default_kubeconfig()
    return [
        Check(
            "kubeconfig", path.is_file(), str(path), fix="pass --kubeconfig PATH or set KUBECONFIG"
        )
    ]


# What `render` shows after the providers: never a reason a provider is not ready.
ADDONS = "addons (installed on a local or kind cluster by the first run that needs one)"


def addon_checks() -> list[Check]:
    """The addons runs install on demand: each one's pinned version, and whether its build
    is cached (else the first run that needs it builds it, a few minutes)."""
    from harness import argo_rollouts, network_policy
    from harness.cluster.build import cached_component, cached_program

    module, version = network_policy.pinned()
    found = [
        (
            f"Argo Rollouts {argo_rollouts.VERSION} (rollout: {{controller: argo-rollouts}})",
            cached_program(argo_rollouts.CONTROLLER_PACKAGE, argo_rollouts.VERSION),
        ),
        (
            f"NetworkPolicy enforcement: {module} {version} (expect: network_policy)",
            cached_component(network_policy.ADDON, network_policy.ADDON),
        ),
    ]
    return [
        Check(
            name,
            True,
            f"binary built: {path}" if path else "not built yet: the first run builds it",
        )
        for name, path in found
    ]


def all_checks(kubeconfig: Path | None = None) -> dict[str, list[Check]]:
    makers = {
        "existing": lambda: existing_checks(kubeconfig),
        "kind": kind_checks,
        "local": local_checks,
    }
    return {name: makers[name]() for name in DETECTION_ORDER}


def render(results: dict[str, list[Check]], addons: list[Check] | None = None) -> str:
    lines = []
    for provider, checks in results.items():
        ready = all(c.ok for c in checks)
        lines.append(f"{provider}: {'ready' if ready else 'not ready'}")
        for c in checks:
            lines.append(f"  [{'ok' if c.ok else 'missing'}] {c.name}: {c.detail}")
            if not c.ok and c.fix:
                lines.append(f"      fix: {c.fix}")
    if addons:
        lines.append(ADDONS)
        lines += [f"  {c.name}: {c.detail}" for c in addons]
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print every provider's checks; exit 1 unless the asked-for (or any) provider is ready."""
    results = all_checks()
    print(render(results, addon_checks()))
    wanted = [args.provider] if args.provider not in (None, "auto") else list(results)
    ready = [p for p in wanted if all(c.ok for c in results[p])]
    print(f"\nready: {', '.join(ready) if ready else 'none'}", file=sys.stderr)
    return 0 if ready else 1
