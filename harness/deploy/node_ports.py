"""NodePorts for the harness's Services: a free one from the provider's range for each, the
least recently used first, and a wait until each answers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.kube import Kube
from harness.locks import file_lock
from harness.paths import cache_dir
from harness.render import Object, describe
from harness.wait import wait_for


class NodePortPool:
    """Hands out NodePorts from the harness's range that no Service in the cluster holds.

    Args:
        candidates: the ports the provider makes answer on 127.0.0.1.
        taken: port -> the Service holding it ("namespace/name").
    """

    def __init__(self, candidates: Sequence[int], taken: Mapping[int, str]) -> None:
        self.candidates = tuple(candidates)
        self.taken = dict(taken)

    def take(self, holder: str) -> int:
        """Reserve a free port for `holder`.

        Raises:
            HarnessError: every port of the range is held; the message lists by whom.
        """
        for port in self.candidates:
            if port not in self.taken:
                self.taken[port] = holder
                return port
        holders = ", ".join(f"{p}: {self.taken[p]}" for p in self.candidates)
        raise HarnessError(
            f"no free NodePort for {holder} in {self.candidates[0]}-{self.candidates[-1]} "
            f"({holders})",
            fix="tear down deployments you no longer need, or pass more node_ports",
        )

    def assign(self, service: Object) -> list[int]:
        """Give every port of a NodePort Service a free NodePort; return them."""
        ports = service["spec"].get("ports") or []
        for entry in ports:
            entry["nodePort"] = self.take(describe(service))
        return [entry["nodePort"] for entry in ports]


class NodePortRotation:
    """When each NodePort of a cluster was last handed out, so the least recently used goes
    first.

    A Service without ready endpoints makes kube-proxy REJECT connections to its NodePort, and
    each rejected SYN from 127.0.0.1 leaves an un-NATed conntrack entry for 120 s that
    kube-proxy never flushes (kubernetes/kubernetes#48719). A later test whose Service got the
    same NodePort, and whose load reuses one of those source ports, would be refused although
    its Service answers. Rotating through the range keeps a port idle for minutes between
    tests instead of seconds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of(cls, kube: Kube) -> NodePortRotation:
        key = hashlib.sha256(str(Path(kube.kubeconfig).resolve()).encode()).hexdigest()[:16]
        return cls(cache_dir() / "node-ports" / f"{key}.json")

    def _read(self) -> dict[str, float]:
        try:
            return {str(k): float(v) for k, v in json.loads(self.path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def order(self, candidates: Sequence[int]) -> list[int]:
        """`candidates`, the never used first, then from the longest idle."""
        used = self._read()
        return sorted(candidates, key=lambda port: used.get(str(port), 0.0))

    def note(self, ports: Iterable[int]) -> None:
        """Record that `ports` were handed out now."""
        with file_lock(self.path.with_suffix(".lock")):
            used = self._read()
            used.update({str(port): time.time() for port in ports})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(used))


def is_node_port_service(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") == "NodePort"


def node_ports_in_use(kube: Kube) -> dict[int, str]:
    """NodePort -> "namespace/name" of the Service holding it, over the whole cluster."""
    taken = {}
    for service in kube.core.list_service_for_all_namespaces(_request_timeout=30).items:
        for entry in service.spec.ports or []:
            if entry.node_port:
                taken[entry.node_port] = f"{service.metadata.namespace}/{service.metadata.name}"
    return taken


# Where the NodePort probe connects from. A SYN that arrives before kube-proxy has written
# the NodePort's rules leaves an un-NATed conntrack entry for 120 s, and kube-proxy does not
# flush TCP entries (kubernetes/kubernetes#48719). A later connection that reuses that source
# address and port is then refused, although the Service answers. The load connects from
# 127.0.0.1, so probing from another loopback address keeps those entries out of its way.
PROBE_SOURCE_ADDRESS = "127.0.0.2" if sys.platform.startswith("linux") else ""
# How long a probe connection must stay open to count (a proxy closes it within milliseconds).
PROXY_VERDICT_S = 0.3


def wait_node_ports_answer(ports: Sequence[int], *, timeout: float = 30) -> None:
    """Wait until each NodePort accepts connections on 127.0.0.1 and keeps them open.

    Pods can be Ready a moment before kube-proxy has written the NodePort's rules; until
    then a connection is refused (or, behind a proxy, closed at once). The probe connects
    from PROBE_SOURCE_ADDRESS (see there).

    Raises:
        WaitTimeout: a port still refuses connections; the last error is in the message.
    """

    def all_answer() -> bool:
        for port in ports:
            with socket.create_connection(
                ("127.0.0.1", port), timeout=2, source_address=(PROBE_SOURCE_ADDRESS, 0)
            ) as connection:
                # A userland proxy (kind's port mappings, through docker-proxy) accepts at
                # once and closes the connection when the Service behind it refuses.
                connection.settimeout(PROXY_VERDICT_S)
                try:
                    if not connection.recv(1):
                        raise ConnectionResetError(f"127.0.0.1:{port} closed the connection")
                except TimeoutError:
                    pass  # open and quiet: the Service holds it
        return True

    wait_for(
        all_answer,
        what=f"NodePort {', '.join(map(str, ports))} to answer on 127.0.0.1",
        timeout=timeout,
        interval=0.25,
        transient=(OSError,),
    )
