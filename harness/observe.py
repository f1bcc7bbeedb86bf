"""The per-test timeline: watches on the test's namespace (and nodes), one JSON line per change.

Observers record, reporters render: `TimelineRecorder` only writes timestamped facts
(`time.time()`, the same clock as the load record); `Timeline` answers questions about them
("which pods were Ready at t?") for assertions and reports.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from harness.errors import WaitTimeout
from harness.kube import API_NOT_UP, Kube
from harness.labels import LOAD_LABEL

# A watch returns this often so that stop() is honoured promptly.
WATCH_SLICE_S = 2
RECONNECT_PAUSE_S = 0.5


def _containers(status: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for cs in status.get("containerStatuses") or []:
        (state_name, detail), *_ = (cs.get("state") or {"unknown": {}}).items()
        reason = (detail or {}).get("reason")
        out.append(
            {
                "name": cs["name"],
                "ready": cs.get("ready", False),
                "restarts": cs.get("restartCount", 0),
                "state": f"{state_name}:{reason}" if reason else state_name,
            }
        )
    return out


def _conditions(status: dict[str, Any]) -> dict[str, str]:
    return {
        c["type"]: c["status"] + (f":{c['reason']}" if c.get("reason") else "")
        for c in status.get("conditions") or []
    }


def summarize_pod(obj: dict[str, Any]) -> dict[str, Any]:
    meta, status = obj["metadata"], obj.get("status") or {}
    owners = meta.get("ownerReferences") or [{}]
    return {
        "phase": status.get("phase"),
        "ready": _conditions(status).get("Ready", "").startswith("True"),
        "deleting": bool(meta.get("deletionTimestamp")),
        "node": (obj.get("spec") or {}).get("nodeName"),
        "ip": status.get("podIP"),
        "owner": owners[0].get("name"),
        "containers": _containers(status),
    }


def summarize_deployment(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
    return {
        "replicas": spec.get("replicas"),
        "total": status.get("replicas", 0),  # pods of every ReplicaSet, old ones included
        "updated": status.get("updatedReplicas", 0),
        "ready": status.get("readyReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "unavailable": status.get("unavailableReplicas", 0),
        "generation": obj["metadata"].get("generation"),
        "observed": status.get("observedGeneration"),
        "image": containers[0].get("image"),
        "conditions": _conditions(status),
    }


def summarize_replicaset(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = spec.get("template", {}).get("spec", {}).get("containers") or [{}]
    annotations = obj["metadata"].get("annotations") or {}
    return {
        "replicas": status.get("replicas", 0),
        "ready": status.get("readyReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "image": containers[0].get("image"),
        "revision": annotations.get("deployment.kubernetes.io/revision"),
    }


def summarize_hpa(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    cpu = None
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu":
            cpu = (resource.get("current") or {}).get("averageUtilization")
    return {
        "min": spec.get("minReplicas"),
        "max": spec.get("maxReplicas"),
        "current": status.get("currentReplicas"),
        "desired": status.get("desiredReplicas"),
        "cpu": cpu,
        "conditions": _conditions(status),
    }


def summarize_endpointslice(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "service": (obj["metadata"].get("labels") or {}).get("kubernetes.io/service-name"),
        "endpoints": [
            {
                "ip": (e.get("addresses") or [None])[0],
                "pod": (e.get("targetRef") or {}).get("name"),
                "ready": (e.get("conditions") or {}).get("ready"),
                "serving": (e.get("conditions") or {}).get("serving"),
                "terminating": (e.get("conditions") or {}).get("terminating"),
            }
            for e in obj.get("endpoints") or []
        ],
    }


def summarize_event(obj: dict[str, Any]) -> dict[str, Any]:
    involved = obj.get("involvedObject") or {}
    return {
        "reason": obj.get("reason"),
        "message": obj.get("message"),
        "type": obj.get("type"),
        "object": f"{involved.get('kind')}/{involved.get('name')}",
        "count": obj.get("count"),
    }


def summarize_node(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "ready": _conditions(status).get("Ready"),
        "unschedulable": bool(spec.get("unschedulable")),
        "taints": [t["key"] for t in spec.get("taints") or []],
    }


@dataclass(frozen=True)
class Watched:
    """One resource kind the recorder follows: how to list it and how to summarize it."""

    kind: str
    lister: Callable[[Kube], Callable[..., Any]]
    summarize: Callable[[dict[str, Any]], dict[str, Any]]
    namespaced: bool = True


WATCHED: tuple[Watched, ...] = (
    Watched("Pod", lambda k: k.core.list_namespaced_pod, summarize_pod),
    Watched("Deployment", lambda k: k.apps.list_namespaced_deployment, summarize_deployment),
    Watched("ReplicaSet", lambda k: k.apps.list_namespaced_replica_set, summarize_replicaset),
    Watched(
        "HorizontalPodAutoscaler",
        lambda k: k.autoscaling.list_namespaced_horizontal_pod_autoscaler,
        summarize_hpa,
    ),
    Watched(
        "EndpointSlice",
        lambda k: k.discovery.list_namespaced_endpoint_slice,
        summarize_endpointslice,
    ),
    Watched("Event", lambda k: k.core.list_namespaced_event, summarize_event),
    Watched("Node", lambda k: k.core.list_node, summarize_node, namespaced=False),
)


# What the recorder follows: everything but the harness's own load pods (Locust placed in the
# test's namespace), which are not the service under test; counted among its pods they made a
# capacity run's baseline 5 Ready pods instead of 2, and its HPA "never scaled up".
UNDER_TEST = f"!{LOAD_LABEL}"

# Entry types that carry an object's state (the others: DELETED, WATCH-ERROR, MARK).
WATCH_EVENTS = ("ADDED", "MODIFIED", "SYNC")
# In a DELETED entry's state: the deletion was seen by a relist, not by the watch.
RELISTED = "gone_at_relist"


@dataclass(frozen=True)
class Entry:
    """One fact on the timeline: at `t` (epoch seconds), `kind/name` was seen as `state`.

    `type` is the watch event (ADDED, MODIFIED, DELETED), SYNC for a (re)list after a
    disconnect, or MARK for an annotation the test made (a fault injected, a rollout).
    """

    t: float
    type: str
    kind: str
    name: str
    state: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "t": round(self.t, 3),
                "type": self.type,
                "kind": self.kind,
                "name": self.name,
                "state": self.state,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, line: str) -> Entry:
        data = json.loads(line)
        return cls(data["t"], data["type"], data["kind"], data["name"], data.get("state") or {})


class TimelineRecorder:
    """Watches a namespace's workloads (and the nodes) and appends every change to a file.

    Example:
        >>> with TimelineRecorder(kube, "ns", Path("timeline.jsonl")) as rec:  # doctest: +SKIP
        ...     rec.mark("fault", target="pod/demo-1")
        ...     ...
        >>> rec.timeline().ready_pods(at=time.time())                        # doctest: +SKIP
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        path: Path,
        *,
        watched: tuple[Watched, ...] = WATCHED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.path = path
        self.watched = watched
        self.clock = clock
        self._entries: list[Entry] = []
        self._last_state: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._synced = threading.Barrier(len(watched) + 1)

    def __enter__(self) -> TimelineRecorder:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30) -> None:
        """Start one watch per kind; returns once each has listed the current state."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        for spec in self.watched:
            thread = threading.Thread(
                target=self._follow, args=(spec,), name=f"timeline-{spec.kind}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        try:
            self._synced.wait(timeout)
        except threading.BrokenBarrierError:
            self.stop()
            raise WaitTimeout(
                f"the timeline watches of {self.namespace} to list",
                timeout,
                "the API server did not answer every list",
            ) from None

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(WATCH_SLICE_S + 5)

    def mark(self, label: str, **state: Any) -> Entry:
        """Put the test's own event (fault injected, rollout started) on the timeline."""
        return self._record(Entry(self.clock(), "MARK", "Mark", label, state))

    def timeline(self) -> Timeline:
        with self._lock:
            return Timeline(list(self._entries))

    def _record(self, entry: Entry) -> Entry:
        with self._lock:
            key = (entry.kind, entry.name)
            if entry.type == "MODIFIED" and self._last_state.get(key) == entry.state:
                return entry  # a change outside what the summary keeps (heartbeats, counters)
            if entry.type == "DELETED":
                self._last_state.pop(key, None)
            elif entry.type in WATCH_EVENTS:
                self._last_state[key] = entry.state
            self._entries.append(entry)
            with self.path.open("a") as out:
                out.write(entry.to_json() + "\n")
        return entry

    def _follow(self, spec: Watched) -> None:
        args = (self.namespace,) if spec.namespaced else ()
        lister = spec.lister(self.kube)
        first = True
        while not self._stop.is_set():
            try:
                version = self._list(spec, lister, args)
                if first:
                    first = False
                    self._synced.wait()
                self._watch(spec, lister, args, version)
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: our version expired, relist below
                    self._pause_after(spec, f"{exc.status} {exc.reason}")
            except threading.BrokenBarrierError:
                pass
            except (*API_NOT_UP, KeyError, ValueError) as exc:
                # Disconnects, and the client's own failure to parse an expired watch's
                # ERROR event: note it on the timeline, then relist (a resync).
                self._pause_after(spec, f"{type(exc).__name__}: {exc}")

    def _pause_after(self, spec: Watched, problem: str) -> None:
        self._record(Entry(self.clock(), "WATCH-ERROR", spec.kind, "", {"error": problem}))
        self._stop.wait(RECONNECT_PAUSE_S)

    def _list(self, spec: Watched, lister: Callable[..., Any], args: tuple[str, ...]) -> str:
        response = lister(
            *args, label_selector=UNDER_TEST, _preload_content=False, _request_timeout=30
        )
        listing = json.loads(response.data)
        now = self.clock()
        items = listing.get("items") or []
        for item in items:
            self._record(
                Entry(now, "SYNC", spec.kind, item["metadata"]["name"], spec.summarize(item))
            )
        # An object deleted while the watch was down sends no DELETED: the relist is the only
        # word of it, as client-go's reflector replaces its whole store on a relist.
        listed = {item["metadata"]["name"] for item in items}
        with self._lock:
            gone = [
                (name, state)
                for (kind, name), state in self._last_state.items()
                if kind == spec.kind and name not in listed
            ]
        for name, state in gone:
            self._record(Entry(now, "DELETED", spec.kind, name, state | {RELISTED: True}))
        return listing["metadata"]["resourceVersion"]

    def _watch(
        self, spec: Watched, lister: Callable[..., Any], args: tuple[str, ...], version: str
    ) -> None:
        while not self._stop.is_set():
            stream: Iterator[dict[str, Any]] = watch.Watch().stream(
                lister,
                *args,
                label_selector=UNDER_TEST,
                resource_version=version,
                timeout_seconds=WATCH_SLICE_S,
                allow_watch_bookmarks=True,
                deserialize=False,
            )
            for event in stream:
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self._record(
                        Entry(
                            self.clock(),
                            event["type"],
                            spec.kind,
                            obj["metadata"]["name"],
                            spec.summarize(obj),
                        )
                    )


def ready_endpoint_pods(slices: dict[str, dict[str, Any]]) -> set[str]:
    """The pods that EndpointSlice states (name -> summary) hold as ready endpoints."""
    return {
        endpoint["pod"]
        for state in slices.values()
        for endpoint in state.get("endpoints") or []
        if endpoint.get("ready") and endpoint.get("pod")
    }


def serving(state: dict[str, Any]) -> bool:
    """True for a pod state that is Ready and not terminating (it takes traffic)."""
    return bool(state.get("ready")) and not state.get("deleting")


def restarts_of(state: dict[str, Any]) -> int:
    """A pod state's container restarts, summed over its containers."""
    return sum(int(c.get("restarts") or 0) for c in state.get("containers") or [])


def owned_by(state: dict[str, Any], deployment: str) -> bool:
    """Whether a pod state belongs to `deployment` (its ReplicaSets are <deployment>-<hash>)."""
    return (state.get("owner") or "").rsplit("-", 1)[0] == deployment


@dataclass(frozen=True)
class Disruption:
    """What a fault did to the serving pods, as `Timeline.disruption` reads it (None: not
    seen while recorded)."""

    detected_at: float | None  # fewer pods served than before, or a container restarted
    recovered_at: float | None  # as many served again, every restarted pod among them
    serving_before: int = 0  # pods that served just before the fault


class Timeline:
    """Questions about a recorded timeline, for assertions and reports."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = sorted(entries, key=lambda e: e.t)

    @classmethod
    def load(cls, path: Path) -> Timeline:
        return cls([Entry.from_json(line) for line in path.read_text().splitlines() if line])

    def of(self, kind: str, *, since: float = 0, until: float = float("inf")) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind and since <= e.t <= until]

    def states_at(self, kind: str, at: float) -> dict[str, dict[str, Any]]:
        """The last known state of every object of `kind` at time `at` (deleted ones gone)."""
        last = deque(self.replay(kind, until=at), maxlen=1)  # the last moment holds it
        return dict(last[0][1]) if last else {}

    def replay(
        self, kind: str, *, since: float = float("-inf"), until: float = float("inf")
    ) -> Iterator[tuple[float, dict[str, dict[str, Any]]]]:
        """Every object of `kind` as it stood after each moment one changed, from `since` to
        `until`: `states_at` for every such moment, in one pass. The entries of one moment (a
        relist) are applied together. The mapping yielded is updated in place: copy what you
        keep."""
        current: dict[str, dict[str, Any]] = {}
        entries = self.of(kind, until=until)
        for index, entry in enumerate(entries):
            if entry.type == "DELETED":
                current.pop(entry.name, None)
            elif entry.type != "WATCH-ERROR":
                current[entry.name] = entry.state
            if entry.t >= since and (index + 1 == len(entries) or entries[index + 1].t != entry.t):
                yield entry.t, current

    def ready_endpoints(self, at: float) -> set[str]:
        """Pods that are a ready endpoint of any Service in the namespace at `at`."""
        return ready_endpoint_pods(self.states_at("EndpointSlice", at))

    def ready_pods(self, at: float, *, deployment: str | None = None) -> set[str]:
        """Pods (of `deployment`, when given) that are Ready and not terminating at `at`."""
        return {
            name
            for name, state in self.states_at("Pod", at).items()
            if serving(state) and (deployment is None or owned_by(state, deployment))
        }

    def disruption(
        self,
        fault_at: float,
        *,
        until: float = float("inf"),
        deployment: str | None = None,
        baseline: int | None = None,
    ) -> Disruption:
        """How the pods (of `deployment`, when given) went through a fault at `fault_at`.

        Detected: the first moment from it at which fewer pods serve than before it (or
        than `baseline`, when given and higher), or a container has restarted since.
        Recovered: the first moment from then at which as many serve again and every pod that
        restarted serves. The one reading of "recovered" that verdicts and reports share.
        """

        def pods(states: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
            if deployment is None:
                return states
            return {name: s for name, s in states.items() if owned_by(s, deployment)}

        def count_serving(states: dict[str, dict[str, Any]]) -> int:
            return sum(serving(s) for s in states.values())

        # Just before the fault: a change recorded at its very moment is the fault's doing.
        before = pods(self.states_at("Pod", math.nextafter(fault_at, -math.inf)))
        serving_before = count_serving(before)
        wanted = max(serving_before, baseline or 0)
        restarts_before = {name: restarts_of(s) for name, s in before.items()}
        detected = None
        restarted: set[str] = set()
        for t, states in self.replay("Pod", since=fault_at, until=until):
            now = pods(states)
            restarted |= {
                name for name, s in now.items() if restarts_of(s) > restarts_before.get(name, 0)
            }
            count = count_serving(now)
            if detected is None and (count < wanted or restarted):
                detected = t
            if (
                detected is not None
                and count >= wanted
                and all(serving(now[name]) for name in restarted & now.keys())
            ):
                return Disruption(detected, t, serving_before)
        return Disruption(detected, None, serving_before)

    def render(
        self, *, since: float = 0, until: float = float("inf"), kinds: tuple[str, ...] = ()
    ) -> str:
        """A human-readable slice of the timeline, for assertion messages."""
        start = self.entries[0].t if self.entries else 0
        lines = [
            f"+{e.t - start:7.2f}s {e.type:<8} {e.kind}/{e.name} "
            + json.dumps(e.state, separators=(",", ":"))
            for e in self.entries
            if since <= e.t <= until and (not kinds or e.kind in kinds)
        ]
        return "\n".join(lines)
