"""Go package paths: the program file `go install` makes of a main package (a spec's
`build: {go: PACKAGE}` puts it at /bin/<that name>; the build cache names it so)."""

from __future__ import annotations

import re


def program_name(package: str) -> str:
    """The file name `go install` gives main package `package`: its last path element, or
    the one before a major-version suffix (`k8s.io/kube-state-metrics/v2` ->
    `kube-state-metrics`).

    Example:
        >>> program_name("github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin")
        'go-httpbin'
    """
    parts = package.rstrip("/").split("/")
    if len(parts) > 1 and re.fullmatch(r"v(?:[2-9]|[1-9]\d+)", parts[-1]):
        return parts[-2]
    return parts[-1]
