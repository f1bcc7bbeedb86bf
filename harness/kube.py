"""Kubernetes API clients for a cluster, built from its kubeconfig."""

from __future__ import annotations

import atexit
import base64
import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.config import kube_config
from kubernetes.dynamic import DynamicClient

from harness.errors import InvalidConfiguration
from harness.paths import cache_dir
from harness.processes import process_alive, this_process
from harness.wait import Pending, wait_for

# (connect, read) seconds for every API call that gives none of its own.
REQUEST_TIMEOUT_S = (10.0, 60.0)


def client_files_dir() -> Path:
    """Where this process's API clients keep the certificates and keys a kubeconfig embeds:
    the kubernetes library writes them to files (TLS reads files) and removes them only at
    a clean exit, so in the harness's cache, one folder per process (0700), and the folders
    of processes that were killed are removed here (not in /tmp, where keys pile up)."""
    root = cache_dir().absolute() / "client-files"
    mine = root / this_process()
    # The library reuses a file it wrote for the same content: not once its folder is gone
    # (an earlier cache folder of this process, a test's).
    for content, path in list(kube_config._temp_files.items()):
        if not os.path.exists(path):
            kube_config._temp_files.pop(content, None)
    if not mine.is_dir():
        for left in root.glob("*@*"):
            if not process_alive(left.name):
                shutil.rmtree(left, ignore_errors=True)
        mine.mkdir(mode=0o700, parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, mine, ignore_errors=True)
    return mine


class Kube:
    """Typed API groups of one cluster, sharing one connection pool.

    Example:
        >>> kube = Kube(Path("kubeconfig"))            # doctest: +SKIP
        >>> kube.core.list_namespace().items           # doctest: +SKIP
    """

    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        configuration = client.Configuration()
        # A read that timed out is not sent again: the server took the request, and three
        # more waits would make a 10 s deadline 40 s. The harness's waits retry on their own.
        configuration.retries = urllib3.Retry(total=3, read=0)
        files = client_files_dir()
        try:
            config.load_kube_config(
                config_file=str(kubeconfig),
                context=context,
                client_configuration=configuration,
                temp_file_path=str(files),
            )
        except (config.ConfigException, OSError) as exc:  # never quotes the file's lines
            raise InvalidConfiguration(
                f"kubeconfig {kubeconfig} cannot be used ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'empty'})",
                fix="bring the cluster up (`harness cluster up`) or give a kubeconfig of a "
                "running cluster",
            ) from None
        self.api_client: client.ApiClient = client.ApiClient(configuration)
        # Every typed call goes through this method (kubernetes >= 37; a test checks it).
        call = self.api_client._call_with_legacy_options

        def call_with_a_timeout(
            request: Any, types: Any, async_req: Any, preload: bool, timeout: Any, *rest: Any
        ) -> Any:
            # An API server that accepts and never answers must not hang the harness; a
            # call that streams (watches, followed logs: _preload_content=False) runs on.
            if timeout is None and preload:
                timeout = REQUEST_TIMEOUT_S
            return call(request, types, async_req, preload, timeout, *rest)

        self.api_client._call_with_legacy_options = call_with_a_timeout  # type: ignore[method-assign]

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @cached_property
    def autoscaling(self) -> client.AutoscalingV2Api:
        return client.AutoscalingV2Api(self.api_client)

    @cached_property
    def policy(self) -> client.PolicyV1Api:
        return client.PolicyV1Api(self.api_client)

    @cached_property
    def discovery(self) -> client.DiscoveryV1Api:
        return client.DiscoveryV1Api(self.api_client)

    @cached_property
    def events(self) -> client.EventsV1Api:
        return client.EventsV1Api(self.api_client)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    @cached_property
    def dynamic(self) -> DynamicClient:
        """Any kind by apiVersion and kind (manifests, CRDs), with the same default timeout."""
        return _DynamicClientWithATimeout(self.api_client)

    @cached_property
    def server_version(self) -> str:
        """The API server's version, e.g. v1.34.4."""
        return client.VersionApi(self.api_client).get_code(_request_timeout=30).git_version

    def close(self) -> None:
        self.api_client.close()


class _DynamicClientWithATimeout(DynamicClient):
    # The dynamic client (discovery included) calls the API client's call_api directly, past
    # the typed clients' path that Kube gives its default timeout.
    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        if not params.get("watch"):
            params.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
        return super().request(method, path, body, **params)


# While an API server starts, connections are refused or time out: that is "not yet".
API_NOT_UP = (urllib3.exceptions.HTTPError, ConnectionError, OSError)


def wait_nodes_ready(kube: Kube, *, timeout: float = 300) -> list[str]:
    """Wait until the API answers and every node reports Ready; return the node names."""

    def all_ready() -> list[str] | Pending:
        nodes = kube.core.list_node(_request_timeout=10).items
        if not nodes:
            return Pending("no node registered yet")
        not_ready = [
            n.metadata.name
            for n in nodes
            if not any(
                c.type == "Ready" and c.status == "True" for c in (n.status.conditions or [])
            )
        ]
        if not_ready:
            return Pending(f"not Ready: {', '.join(not_ready)}")
        return [n.metadata.name for n in nodes]

    return wait_for(
        all_ready, what="every node to be Ready", timeout=timeout, interval=1, transient=API_NOT_UP
    )


def cluster_uid(kube: Kube) -> str:
    """What tells this cluster from any other, whatever its name: the uid of its kube-system
    namespace, made once when the cluster was."""
    return kube.core.read_namespace("kube-system").metadata.uid


def container_port(kube: Kube, namespace: str, pod: str, container: str) -> int:
    """The first port `container` of `pod` declares (where the service listens)."""
    spec = kube.core.read_namespaced_pod(pod, namespace).spec
    for c in spec.containers:
        if c.name == container and c.ports:
            return c.ports[0].container_port
    raise InvalidConfiguration(
        f"container {container} of pod {pod} declares no port",
        fix="declare the service port in the container's `ports`",
    )


def secret_value(kube: Kube, namespace: str, name: str, key: str) -> str:
    """One value of a Secret, decoded (e.g. a service's admin token).

    Raises:
        InvalidConfiguration: the Secret has no such key.
    """
    data = kube.core.read_namespaced_secret(name, namespace).data or {}
    if key not in data:
        raise InvalidConfiguration(
            f"Secret {namespace}/{name} has no key {key!r}",
            fix="name the Secret and key that hold the value",
        )
    return base64.b64decode(data[key]).decode()
