"""How the harness makes a container's probe fail from outside, without the service's help.

A probe is failed by packet filter rules in the pod's network namespace that drop exactly
what the probe sends, so that the service itself runs on untouched:

- httpGet: the request line (`GET <path> `) to the probe's port is dropped, so the probe
  times out while other paths (the load's) are still answered;
- tcpSocket and gRPC: new connections to the port are dropped; new connections of the load
  to this pod fail too, while open (keep-alive) ones go on;
- exec: only when its command dials the pod itself (`localhost:8080/healthz`,
  `-addr=:5000`): the same rules, on loopback only, so outside traffic is untouched.

Probes that fail this way stand for the service's own failures (a dependency down, a hung
main loop) as the kubelet sees them. Two probes that check the same thing fail together.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import InvalidConfiguration

PROBES = ("readiness", "liveness", "startup")
# host:port[/path] of a command that dials the pod itself; the host may be left out (":5000").
_DIALS_SELF = re.compile(
    r"(?:(?:https?://)?(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])|(?:^|(?<=[\s='\"])))"
    r":(\d{2,5})(/[^\s'\"]*)?"
)
_DIALS_SELF_SPACED = re.compile(r"(?:localhost|127\.0\.0\.1)\s+(\d{2,5})\b")


class ProbeNotFailable(InvalidConfiguration):
    """The probe cannot be made to fail from outside the container; the message says why."""


@dataclass(frozen=True)
class ProbeBlock:
    """Rules (for harness.chaos.faults' iptables rule lists) that fail one probe."""

    probe: str
    rules: tuple[str, ...]
    what: str  # what the rules stop, for reports: "GET /healthz on port 8080"
    side_effect: str | None = None


def probe_of(container: Mapping[str, Any], probe: str) -> Mapping[str, Any] | None:
    """The container's `probe` ("readiness", "liveness", "startup") as in its spec, or None."""
    if probe not in PROBES:
        raise InvalidConfiguration(f"no probe kind {probe!r}", fix=f"use one of {PROBES}")
    return container.get(f"{probe}Probe")


def _port_number(container: Mapping[str, Any], port: Any, probe: str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ProbeNotFailable(
        f"container {container.get('name')}'s {probe} probe names port {port!r}, "
        "which the container does not declare",
        fix="declare the port in the container's ports, or give the probe a port number",
    )


def _request_line(path: str) -> str:
    """iptables' hex form of the start of an HTTP GET request for `path`."""
    return "|" + f"GET {path or '/'} ".encode().hex() + "|"


def _http_rule(port: int, path: str, *, loopback: bool) -> str:
    where = "-i lo " if loopback else ""
    return (
        f"INPUT {where}-p tcp --dport {port} -m string --algo bm --hex-string {_request_line(path)}"
    )


def _syn_rule(port: int, *, loopback: bool) -> str:
    return f"INPUT {'-i lo ' if loopback else ''}-p tcp --dport {port} --syn"


def probe_block(container: Mapping[str, Any], probe: str) -> ProbeBlock:
    """The rules that make `container`'s `probe` fail, and what else they stop.

    Args:
        container: the container as in the pod spec (camelCase keys, as the API serves it).
        probe: "readiness", "liveness" or "startup".

    Raises:
        ProbeNotFailable: the container has no such probe, or it is an exec probe that
            dials nothing the harness can see.

    Example:
        >>> c = {"name": "web", "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}}}
        >>> probe_block(c, "readiness").what
        'GET /ready on port 80'
    """
    spec = probe_of(container, probe)
    name = container.get("name")
    if not spec:
        raise ProbeNotFailable(
            f"container {name} has no {probe} probe", fix=f"give it a {probe}Probe to test"
        )
    if "httpGet" in spec:
        get = spec["httpGet"]
        port = _port_number(container, get.get("port"), probe)
        path = get.get("path") or "/"
        return ProbeBlock(
            probe, (_http_rule(port, path, loopback=False),), f"GET {path} on port {port}"
        )
    for kind in ("tcpSocket", "grpc"):
        if kind in spec:
            port = _port_number(container, spec[kind].get("port"), probe)
            return ProbeBlock(
                probe,
                (_syn_rule(port, loopback=False),),
                f"new connections to port {port}",
                side_effect=f"new connections of the load to port {port} of this pod fail too",
            )
    command = " ".join(shlex.quote(a) for a in (spec.get("exec") or {}).get("command") or [])
    found = _DIALS_SELF.search(command)
    if found:
        port, path = int(found[1]), found[2]
        if path:
            rule = _http_rule(port, path, loopback=True)
            return ProbeBlock(probe, (rule,), f"GET {path} on port {port} from inside the pod")
        return ProbeBlock(
            probe,
            (_syn_rule(port, loopback=True),),
            f"connections to port {port} from inside the pod",
        )
    spaced = _DIALS_SELF_SPACED.search(command)
    if spaced:
        port = int(spaced[1])
        return ProbeBlock(
            probe,
            (_syn_rule(port, loopback=True),),
            f"connections to port {port} from inside the pod",
        )
    raise ProbeNotFailable(
        f"container {name}'s {probe} probe is an exec probe (`{command}`) that dials no port "
        "of the pod the harness can recognise (host:port), so nothing outside the container "
        "can make it fail",
        fix="give the service's spec `admin:` hooks that make the probe fail, or skip this promise",
    )
