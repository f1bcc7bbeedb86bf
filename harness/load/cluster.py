"""Locust inside the cluster: a master pod and N worker pods in the test's namespace.

The pods run the load image (`harness.images.load`): Locust and the harness's recorder from
this venv. They reach the service through its ClusterIP Service name, so nothing needs a
NodePort or a route from the host. The master writes its records to its standard output,
each line marked; the harness follows the pod's log and splits it into the run's event file
and Locust's log, so everything downstream reads the same file as for load from the host.

Bounds: every pod has an activeDeadlineSeconds (the kubelet ends it even if the harness
died), and the pods go with the namespace. Each pod's own egress rule (iptables in its network
namespace, set by an init container before Locust starts) lets it open connections only to
the target Service's ClusterIP and port, and a worker to its master: nothing else, whatever
the locustfile does and whether or not the cluster's network plugin enforces NetworkPolicies.
A NetworkPolicy says the same to plugins that do, and lets only the run's pods reach its
master. The image's stop signal is the recorder's: deleting the master pod with a grace
period ends the run the way a finished shape does.

The pods resolve the Service's name from their /etc/hosts (hostAliases, filled from the API),
not from the cluster's DNS: the load measures the service, and a DNS outage (CoreDNS is not
Ready for a moment after a kubelet restart on its node, kubernetes/kubernetes#100277) would
otherwise cost a new connection the resolver's 5 s timeout.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from harness.errors import HarnessError, InvalidConfiguration
from harness.kube import API_NOT_UP, Kube
from harness.labels import LOAD_LABEL, LOAD_ROLE_LABEL, MANAGED_BY, MANAGER
from harness.load import _locust_entry
from harness.suite import LOADTESTS
from harness.wait import Pending, wait_for

MASTER_PORT = 5557
IMAGE_LOADTESTS = "/opt/harness/loadtests"
IMAGE_SHAPE = "/opt/harness/harness/load/locust_shape.py"
LOCUSTFILE_MOUNT = "/locustfile"
# The pod-side bound beyond the harness's own time limit: start-up, stop and a margin.
DEADLINE_MARGIN_S = 120
# A log stream silent this long is opened again: a kubelet restart can leave the API
# server's stream open with nothing behind it (the master writes a record every second).
LOG_SILENCE_S = 10


@dataclass(frozen=True)
class ServiceAddress:
    """A load target inside the cluster: its Service, and where that Service answers."""

    name: str
    namespace: str
    cluster_ip: str
    port: int


@dataclass(frozen=True)
class ClusterSite:
    """Where load from the cluster runs: the cluster's API, the test's namespace, the image,
    and the nodes it keeps off (those a test is about to stop: the load must outlive them)."""

    kube: Kube
    namespace: str
    image: str
    avoid_nodes: tuple[str, ...] = ()


class LocustPods:
    """One load run's Locust pods: created by `launch`, followed, stopped, deleted by `kill`."""

    def __init__(
        self,
        site: ClusterSite,
        *,
        target_host: str,
        target_port: int,
        locustfile: Path,
        with_shape: bool,
        workers: int,
        deadline_s: float,
        events_path: Path,
        log_path: Path,
    ) -> None:
        self.site = site
        self.target_host = target_host
        self.target_port = target_port
        self.name = f"locust-{secrets.token_hex(3)}"  # the run's objects: NAME, NAME-master, ...
        self.locustfile = locustfile
        self.with_shape = with_shape
        self.workers = workers
        self.deadline_s = deadline_s
        self.events_path = events_path
        self.log_path = log_path
        self.master = f"{self.name}-master"
        self.exit_code: int | None = None
        self._followers: list[threading.Thread] = []
        self._deleted = False

    # -- start -----------------------------------------------------------------------------

    def launch(self, locust_argv: list[str], env: dict[str, str]) -> None:
        """Create the policy, the locustfile's ConfigMap, the master (or single Locust
        process), then its workers."""
        core = self.site.kube.core
        ns = self.site.namespace
        self.target = find_service(self.site.kube, self.target_host, self.target_port, ns)
        client.NetworkingV1Api(self.site.kube.api_client).create_namespaced_network_policy(
            ns, self._network_policy()
        )
        mounted = not self.locustfile.is_relative_to(LOADTESTS)
        if mounted:
            core.create_namespaced_config_map(
                ns,
                client.V1ConfigMap(
                    metadata=self._metadata(self.name, role=None),
                    data={self.locustfile.name: self.locustfile.read_text()},
                ),
            )
        files = self.locustfiles(mounted)
        role = (
            ["--master", "--master-bind-host", "0.0.0.0", "--master-bind-port", str(MASTER_PORT)]
            if self.workers
            else []
        )
        master_argv = ["-f", files, *role, *locust_argv]
        master_env = {
            **env,
            _locust_entry.EVENTS_FILE_ENV: _locust_entry.STDOUT_EVENTS,
            _locust_entry.POD_REPORTS_ENV: _locust_entry.POD_REPORTS,
        }
        core.create_namespaced_pod(
            ns, self._pod(self.master, "master", master_argv, master_env, master_ip=None)
        )
        self._follow(self.master, self.log_path, records=True)
        ip = wait_for(
            self._master_ip, what=f"Locust master pod {self.master} to get an IP", timeout=60
        )
        for index in range(self.workers):
            worker = f"{self.name}-worker-{index + 1}"
            argv = ["-f", files, "--worker", "--master-host", ip, "--master-port", str(MASTER_PORT)]
            core.create_namespaced_pod(ns, self._pod(worker, "worker", argv, env, master_ip=ip))
            self._follow(worker, self.log_path.with_name(f"locust-worker-{index + 1}.log"))

    def locustfiles(self, mounted: bool) -> str:
        folder = LOCUSTFILE_MOUNT if mounted else IMAGE_LOADTESTS
        files = [f"{folder}/{self.locustfile.name}"]
        if self.with_shape:
            files.append(IMAGE_SHAPE)
        return ",".join(files)

    def _master_ip(self) -> str | Pending:
        pod = self.site.kube.core.read_namespaced_pod(self.master, self.site.namespace)
        if pod.status.pod_ip:
            return pod.status.pod_ip
        return Pending(_pod_state(pod))

    # -- state -----------------------------------------------------------------------------

    def exited(self) -> bool:
        """True once the master's container has ended (or the pod is gone) and its log has
        been copied to the end."""
        if self.exit_code is not None:
            return True
        try:
            pod = self.site.kube.core.read_namespaced_pod(self.master, self.site.namespace)
            ended = [
                s.state.terminated.exit_code
                for s in pod.status.container_statuses or []
                if s.state and s.state.terminated
            ]
        except ApiException as exc:
            if exc.status != 404:
                raise
            ended = [-1]  # deleted (a stop asked for, or someone else): its log says how it went
        if not ended:
            return False
        self._followers[0].join(timeout=10)  # the last records and lines
        self.exit_code = ended[0]
        return True

    def state(self) -> str:
        """The master pod's state, for error messages."""
        try:
            pod = self.site.kube.core.read_namespaced_pod(self.master, self.site.namespace)
        except ApiException as exc:
            return f"pod {self.master}: {exc.reason}"
        return f"pod {self.master}: {_pod_state(pod)}"

    # -- end -------------------------------------------------------------------------------

    def request_stop(self, grace_s: float) -> None:
        """Delete the master with a grace period: the kubelet sends the image's stop signal
        (the recorder's graceful stop), and waits `grace_s` before killing."""
        self._delete_pods(role="master", grace_s=grace_s)

    def kill(self) -> None:
        """Delete every object of the run now (idempotent); wait for the log followers."""
        if not self._deleted:
            self._deleted = True
            self._delete_pods(role=None, grace_s=0)
            with contextlib.suppress(ApiException):
                self.site.kube.core.delete_namespaced_config_map(self.name, self.site.namespace)
            with contextlib.suppress(ApiException):
                client.NetworkingV1Api(self.site.kube.api_client).delete_namespaced_network_policy(
                    self.name, self.site.namespace
                )
        for follower in self._followers:
            follower.join(timeout=10)

    def _delete_pods(self, *, role: str | None, grace_s: float) -> None:
        selector = f"{LOAD_LABEL}={self.name}" + (f",{LOAD_ROLE_LABEL}={role}" if role else "")
        with contextlib.suppress(ApiException):
            self.site.kube.core.delete_collection_namespaced_pod(
                self.site.namespace,
                label_selector=selector,
                grace_period_seconds=int(grace_s),
            )

    # -- logs ------------------------------------------------------------------------------

    def _follow(self, pod: str, log_path: Path, *, records: bool = False) -> None:
        thread = threading.Thread(
            target=self._copy_log, args=(pod, log_path, records), daemon=True, name=f"log-{pod}"
        )
        thread.start()
        self._followers.append(thread)

    def _copy_log(self, pod: str, log_path: Path, records: bool) -> None:
        """Copy the pod's log while it runs: marked lines to the event file, others to its log.

        A log stream opened while the container is still being created can end at once; it
        is opened again (skipping the lines already copied) until the container has ended.
        """
        marker = _locust_entry.RECORD_MARKER
        copied = 0
        reports: dict[str, TextIO] = {}  # the master's Locust reports, by bare name
        with (
            log_path.open("a", encoding="utf-8") as log,
            self.events_path.open("a", encoding="utf-8") as events,
            contextlib.ExitStack() as open_reports,
        ):
            log.write(f"# Locust in pod {self.site.namespace}/{pod}\n")
            while True:
                try:
                    ended = self._container_ended(pod)
                    stream = self._open_log(pod)
                except Exception as exc:  # said in the log the run's error points to
                    log.write(f"# following the log of {pod} failed: {exc}\n")
                    return
                if stream is None:
                    return
                try:
                    for index, line in enumerate(_lines(stream)):
                        if index < copied:
                            continue
                        copied += 1
                        if records and line.startswith(marker):
                            events.write(line[len(marker) :] + "\n")
                            events.flush()
                        elif records and line.startswith(_locust_entry.REPORT_MARKER):
                            chunk = json.loads(line[len(_locust_entry.REPORT_MARKER) :])
                            name = Path(chunk["file"]).name  # the pod names no other place
                            if name.startswith("locust"):
                                if name not in reports:  # opened once, kept for its chunks
                                    path = self.log_path.parent / name
                                    reports[name] = open_reports.enter_context(
                                        path.open("a", encoding="utf-8")
                                    )
                                reports[name].write(chunk["text"])
                        else:
                            log.write(line + "\n")
                            log.flush()
                except urllib3.exceptions.ReadTimeoutError:
                    pass  # silent for LOG_SILENCE_S: opened again, in case nothing is behind it
                except Exception as exc:
                    log.write(f"# log stream of {pod} broke ({exc}); opening it again\n")
                finally:
                    stream.release_conn()
                if ended or self._deleted:
                    return
                time.sleep(0.5)

    def _container_ended(self, pod: str) -> bool:
        """True when the pod's container has ended or the pod is gone (its log is complete)."""
        try:
            status = self.site.kube.core.read_namespaced_pod(pod, self.site.namespace).status
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return any(c.state and c.state.terminated for c in status.container_statuses or [])

    def _open_log(self, pod: str) -> Any:
        """The pod's log stream, once its container has started (None if it never does)."""

        def started() -> Any:
            try:
                return self.site.kube.core.read_namespaced_pod_log(
                    pod,
                    self.site.namespace,
                    follow=True,
                    _preload_content=False,
                    _request_timeout=(10, LOG_SILENCE_S),
                )
            except ApiException as exc:
                # 400: its container is still being created; 404: the pod is gone, or its
                # kubelet has just restarted and does not know it yet.
                if exc.status in (400, 404):
                    if self._deleted or self._container_ended(pod):
                        return None  # a stop, the deadline: nothing more to copy
                    return Pending(f"the log of pod {pod}: {exc.status} {exc.reason}")
                if exc.status >= 500:  # the kubelet serves logs: restarting, or its node down
                    return Pending(f"the log of pod {pod} is not served: {exc.reason}")
                raise

        try:
            return wait_for(
                started,
                what=f"the log of pod {pod}",
                timeout=120,
                interval=0.5,
                transient=API_NOT_UP,
            )
        except HarnessError:  # the pod never started: the run reports its state
            return None

    # -- objects ---------------------------------------------------------------------------

    def _metadata(self, name: str, role: str | None) -> client.V1ObjectMeta:
        labels = {LOAD_LABEL: self.name, MANAGED_BY: MANAGER}
        if role:
            labels[LOAD_ROLE_LABEL] = role
        return client.V1ObjectMeta(name=name, labels=labels)

    def _pod(
        self, name: str, role: str, argv: list[str], env: dict[str, str], master_ip: str | None
    ) -> client.V1Pod:
        allowed = [(self.target.cluster_ip, self.target.port)]
        if master_ip:
            allowed.append((master_ip, MASTER_PORT))
        volumes = [client.V1Volume(name="run", empty_dir=client.V1EmptyDirVolumeSource())]
        mounts = []
        if role == "master":  # Locust's CSV and HTML, sent through the log at its exit
            volumes.append(
                client.V1Volume(name="reports", empty_dir=client.V1EmptyDirVolumeSource())
            )
            mounts.append(
                client.V1VolumeMount(name="reports", mount_path=_locust_entry.POD_REPORTS)
            )
        if not self.locustfile.is_relative_to(LOADTESTS):
            volumes.append(
                client.V1Volume(
                    name="locustfile", config_map=client.V1ConfigMapVolumeSource(name=self.name)
                )
            )
            mounts.append(client.V1VolumeMount(name="locustfile", mount_path=LOCUSTFILE_MOUNT))
        spread = (
            [
                client.V1TopologySpreadConstraint(
                    max_skew=1,
                    topology_key="kubernetes.io/hostname",
                    when_unsatisfiable="DoNotSchedule",
                    node_taints_policy="Honor",  # a tainted control plane is no place for them
                    label_selector=client.V1LabelSelector(
                        match_labels={LOAD_LABEL: self.name, LOAD_ROLE_LABEL: "worker"}
                    ),
                )
            ]
            if role == "worker"
            else None
        )
        return client.V1Pod(
            metadata=self._metadata(name, role),
            spec=client.V1PodSpec(
                restart_policy="Never",
                active_deadline_seconds=int(self.deadline_s + DEADLINE_MARGIN_S),
                automount_service_account_token=False,
                enable_service_links=False,
                termination_grace_period_seconds=30,
                topology_spread_constraints=spread,
                affinity=self._keep_off(self.site.avoid_nodes),
                security_context=client.V1PodSecurityContext(
                    run_as_non_root=True,
                    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                ),
                host_aliases=[
                    client.V1HostAlias(ip=self.target.cluster_ip, hostnames=[self.target_host])
                ],
                init_containers=[self._egress_container(allowed)],
                containers=[
                    client.V1Container(
                        name="locust",
                        image=self.site.image,
                        image_pull_policy="Never",
                        args=argv,
                        env=[client.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())],
                        volume_mounts=mounts or None,
                        security_context=client.V1SecurityContext(
                            allow_privilege_escalation=False,
                            read_only_root_filesystem=True,
                            capabilities=client.V1Capabilities(drop=["ALL"]),
                        ),
                    )
                ],
                volumes=volumes,
            ),
        )

    @staticmethod
    def _keep_off(nodes: Sequence[str]) -> client.V1Affinity | None:
        if not nodes:
            return None
        away = client.V1NodeSelectorRequirement(
            key="kubernetes.io/hostname", operator="NotIn", values=list(nodes)
        )
        return client.V1Affinity(
            node_affinity=client.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                    node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=[away])]
                )
            )
        )

    def _egress_container(self, allowed: list[tuple[str, int]]) -> client.V1Container:
        """The init container that sets the pod's egress rule: root with NET_ADMIN only, for
        the few milliseconds iptables-restore takes; Locust then runs without either."""
        ipv4, ipv6 = egress_rules(allowed)
        return client.V1Container(
            name="egress",
            image=self.site.image,
            image_pull_policy="Never",
            command=[
                "sh",
                "-c",
                'printf "%s" "$RULES_IPV4" | iptables-restore && '
                'printf "%s" "$RULES_IPV6" | ip6tables-restore',
            ],
            env=[
                client.V1EnvVar(name="RULES_IPV4", value=ipv4),
                client.V1EnvVar(name="RULES_IPV6", value=ipv6),
            ],
            volume_mounts=[client.V1VolumeMount(name="run", mount_path="/run")],  # xtables.lock
            security_context=client.V1SecurityContext(
                run_as_user=0,
                run_as_non_root=False,
                allow_privilege_escalation=False,
                read_only_root_filesystem=True,
                capabilities=client.V1Capabilities(drop=["ALL"], add=["NET_ADMIN", "NET_RAW"]),
            ),
        )

    def _network_policy(self) -> client.V1NetworkPolicy:
        """The run's pods reach only pods of this cluster; only its workers reach its master."""
        run = {LOAD_LABEL: self.name}
        return client.V1NetworkPolicy(
            metadata=self._metadata(self.name, role=None),
            spec=client.V1NetworkPolicySpec(
                pod_selector=client.V1LabelSelector(match_labels=run),
                policy_types=["Egress", "Ingress"],
                egress=[
                    client.V1NetworkPolicyEgressRule(
                        to=[client.V1NetworkPolicyPeer(namespace_selector=client.V1LabelSelector())]
                    )
                ],
                ingress=[
                    client.V1NetworkPolicyIngressRule(
                        _from=[
                            client.V1NetworkPolicyPeer(
                                pod_selector=client.V1LabelSelector(match_labels=run)
                            )
                        ]
                    )
                ],
            ),
        )


def _lines(stream: Any) -> Iterator[str]:
    """The complete lines of a log stream (a last line without its newline too)."""
    pending = b""
    for chunk in stream.stream(4096, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line.decode("utf-8", errors="replace") for line in lines)
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _pod_state(pod: client.V1Pod) -> str:
    """A pod's phase and why, e.g. "Pending (ErrImageNeverPull: ...)"."""
    reasons = []
    for status in pod.status.container_statuses or []:
        state = status.state
        if state and state.waiting and state.waiting.reason:
            reasons.append(f"{state.waiting.reason}: {state.waiting.message or ''}".rstrip(": "))
        elif state and state.terminated:
            ended = state.terminated
            reasons.append(
                f"exited {ended.exit_code} ({ended.reason}) after running "
                f"{ended.started_at:%H:%M:%S}..{ended.finished_at:%H:%M:%S}"
            )
    for condition in pod.status.conditions or []:
        if condition.status == "False" and condition.message:
            reasons.append(condition.message)
    return f"{pod.status.phase}" + (f" ({'; '.join(reasons)})" if reasons else "")


def find_service(kube: Kube, host: str, port: int, namespace: str) -> ServiceAddress:
    """The Service a load target from the cluster names (`service_named`; a bare name is in
    `namespace`), read from the API.

    Raises:
        InvalidConfiguration: no such Service, or it has no ClusterIP (headless, ExternalName).
    """
    name, named_namespace = service_named(host)
    namespace = named_namespace or namespace
    try:
        service = kube.core.read_namespaced_service(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
        raise InvalidConfiguration(
            f"load target {host}: there is no Service {name} in namespace {namespace}",
            fix="send the load to a Service the manifests create (Deployed.service_url)",
        ) from None
    cluster_ip = service.spec.cluster_ip
    if not cluster_ip or cluster_ip == "None":
        raise InvalidConfiguration(
            f"load target {host}: Service {namespace}/{name} has no ClusterIP "
            f"(type {service.spec.type}, clusterIP {cluster_ip})",
            fix="send the load to a ClusterIP, NodePort or LoadBalancer Service",
        )
    return ServiceAddress(name, namespace, cluster_ip, port)


def egress_rules(allowed: Sequence[tuple[str, int]]) -> tuple[str, str]:
    """A load pod's egress rule, as iptables-restore input for IPv4 and for IPv6: new TCP
    connections to the `allowed` (address, port) pairs and to its own loopback; every other
    connection attempt is refused at once (REJECT, so a locustfile sees ECONNREFUSED rather
    than waiting for a timeout)."""
    by_family: dict[int, list[str]] = {4: [], 6: []}
    for address, port in allowed:
        family = ipaddress.ip_address(address).version
        by_family[family].append(f"-A OUTPUT -p tcp -d {address} --dport {port} -j ACCEPT")

    def table(accepts: list[str]) -> str:
        return "\n".join([
            "*filter",
            ":OUTPUT ACCEPT [0:0]",
            "-A OUTPUT -o lo -j ACCEPT",
            "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            *accepts,
            "-A OUTPUT -j REJECT",
            "COMMIT",
            "",
        ])  # fmt: skip

    return table(by_family[4]), table(by_family[6])


def service_named(host: str) -> tuple[str, str | None]:
    """The Service name and namespace (None: the test's) a load target from the cluster
    names: `NAME`, `NAME.NAMESPACE.svc` or `NAME.NAMESPACE.svc.cluster.local`.

    Checked before any pod is made.

    Raises:
        InvalidConfiguration: the host is this machine (127.0.0.1, localhost) or a name
            outside the cluster's DNS domain.
    """
    labels = host.split(".")
    if len(labels) == 1 and host != "localhost":
        return host, None
    if len(labels) in (3, 5) and labels[2] == "svc" and labels[3:] in ([], ["cluster", "local"]):
        return labels[0], labels[1]
    raise InvalidConfiguration(
        f"load from the cluster goes to a Service of the cluster, not to {host}",
        fix="pass the service's in-cluster URL (Deployed.service_url, e.g. "
        "http://demo.NAMESPACE.svc:80), or send load from the host",
    )
