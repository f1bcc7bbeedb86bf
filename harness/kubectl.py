"""kubectl for what the API client does not do well: kustomize and port-forwarding."""

from __future__ import annotations

import queue
import re
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from harness.cluster.build import GoToolchainMissing, ensure_binaries
from harness.errors import HarnessError
from harness.wait import Pending, wait_for

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


@cache
def kubectl_path() -> Path:
    """The pinned kubectl (cached, or built); without a Go toolchain, any kubectl on PATH."""
    try:
        return ensure_binaries(["kubectl"])["kubectl"]
    except GoToolchainMissing:
        found = shutil.which("kubectl")
        if found:
            return Path(found)
        raise


@contextmanager
def port_forward(
    kubeconfig: Path, namespace: str, target: str, remote_port: int, *, timeout: float = 20
) -> Iterator[int]:
    """Forward a free port on 127.0.0.1 to `remote_port` of `target` (e.g. "pod/demo-x").

    Yields:
        The local port.

    Raises:
        HarnessError: kubectl exited or did not start forwarding within `timeout`.
    """
    argv = [
        str(kubectl_path()),
        "--kubeconfig",
        str(kubeconfig),
        "-n",
        namespace,
        "port-forward",
        "--address",
        "127.0.0.1",
        target,
        f":{remote_port}",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:
        for line in process.stdout:  # type: ignore[union-attr]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()

    def forwarding() -> int | Pending:
        while not lines.empty():
            line = lines.get()
            seen.append(line.strip())
            if found := FORWARDING.search(line):
                return int(found[1])
        if process.poll() is not None:
            raise HarnessError(
                f"kubectl port-forward {target} exited: {' '.join(seen[-3:])}",
                fix=f"check that {target} exists in {namespace} and is Running",
            )
        return Pending(" | ".join(seen[-2:]) or "kubectl starting")

    try:
        yield wait_for(
            forwarding,
            what=f"port-forward to {target}:{remote_port}",
            timeout=timeout,
            interval=0.1,
        )
    finally:
        process.kill()
        process.wait()


def post_to_pod(
    kubeconfig: Path, namespace: str, pod: str, port: int, path: str, *, token: str
) -> int:
    """POST `path` to one pod's `port` (through a port-forward) with a bearer token.

    Returns:
        The HTTP status, or 0 when the pod closed the connection without answering (a crash
        action may).
    """
    with port_forward(kubeconfig, namespace, f"pod/{pod}", port) as local:
        request = urllib.request.Request(
            f"http://127.0.0.1:{local}{path}",
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (urllib.error.URLError, ConnectionError):
            return 0
