import json
from types import SimpleNamespace

from harness.observe import (
    RELISTED,
    Entry,
    Timeline,
    TimelineRecorder,
    Watched,
    summarize_endpointslice,
    summarize_hpa,
    summarize_pod,
)

POD = {
    "metadata": {"name": "demo-1", "ownerReferences": [{"name": "demo-abc"}]},
    "spec": {"nodeName": "node-1"},
    "status": {
        "phase": "Running",
        "podIP": "10.0.0.5",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "app",
                "ready": True,
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ],
    },
}


def test_pod_summary_keeps_what_assertions_need():
    assert summarize_pod(POD) == {
        "phase": "Running",
        "ready": True,
        "deleting": False,
        "node": "node-1",
        "ip": "10.0.0.5",
        "owner": "demo-abc",
        "containers": [
            {"name": "app", "ready": True, "restarts": 2, "state": "waiting:CrashLoopBackOff"}
        ],
    }


def test_hpa_summary_reads_cpu_utilisation():
    hpa = {
        "metadata": {"name": "demo"},
        "spec": {"minReplicas": 2, "maxReplicas": 5},
        "status": {
            "currentReplicas": 3,
            "desiredReplicas": 4,
            "currentMetrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": 91}},
                }
            ],
        },
    }
    assert summarize_hpa(hpa) | {"conditions": {}} == {
        "min": 2,
        "max": 5,
        "current": 3,
        "desired": 4,
        "cpu": 91,
        "conditions": {},
    }


def test_endpointslice_summary_lists_endpoint_conditions():
    eps = {
        "metadata": {"name": "demo-x", "labels": {"kubernetes.io/service-name": "demo"}},
        "endpoints": [
            {
                "addresses": ["10.0.0.5"],
                "targetRef": {"name": "demo-1"},
                "conditions": {"ready": False, "serving": True, "terminating": True},
            }
        ],
    }
    assert summarize_endpointslice(eps)["endpoints"] == [
        {"ip": "10.0.0.5", "pod": "demo-1", "ready": False, "serving": True, "terminating": True}
    ]


def test_ready_pods_replays_the_timeline_up_to_a_moment():
    timeline = Timeline(
        [
            Entry(1.0, "ADDED", "Pod", "a", {"ready": False}),
            Entry(2.0, "MODIFIED", "Pod", "a", {"ready": True}),
            Entry(2.5, "ADDED", "Pod", "b", {"ready": True}),
            Entry(3.0, "MODIFIED", "Pod", "a", {"ready": True, "deleting": True}),
            Entry(4.0, "DELETED", "Pod", "b", {"ready": True}),
        ]
    )
    assert timeline.ready_pods(at=1.5) == set()
    assert timeline.ready_pods(at=2.7) == {"a", "b"}
    assert timeline.ready_pods(at=3.5) == {"b"}
    assert timeline.ready_pods(at=9) == set()


def slice_with(*pods: str) -> dict:
    return {"endpoints": [{"pod": pod, "ready": True} for pod in pods]}


def test_replay_gives_each_moments_states_in_one_pass_as_states_at_would():
    timeline = Timeline(
        [
            Entry(1.0, "SYNC", "EndpointSlice", "s1", slice_with("a")),
            Entry(2.0, "MODIFIED", "EndpointSlice", "s1", slice_with("a", "b")),
            Entry(2.0, "SYNC", "EndpointSlice", "s2", slice_with("c")),  # a relist: one moment
            Entry(3.0, "WATCH-ERROR", "EndpointSlice", "", {"error": "gone"}),
            Entry(4.0, "DELETED", "EndpointSlice", "s1", slice_with("a", "b")),
            Entry(5.0, "ADDED", "Pod", "x", {"ready": True}),
        ]
    )
    moments = [(t, dict(slices)) for t, slices in timeline.replay("EndpointSlice")]
    assert [t for t, _ in moments] == [1.0, 2.0, 3.0, 4.0]
    for t, slices in moments:
        assert slices == timeline.states_at("EndpointSlice", t)
    assert [t for t, _ in timeline.replay("EndpointSlice", until=2.0)] == [1.0, 2.0]
    assert timeline.ready_endpoints(2.5) == {"a", "b", "c"}
    assert timeline.ready_endpoints(4.0) == {"c"}
    assert timeline.ready_endpoints(0.5) == set()


def test_timeline_round_trips_through_json_lines(tmp_path):
    entries = [
        Entry(1.25, "MARK", "Mark", "fault", {"target": "pod/a"}),
        Entry(0.5, "SYNC", "Node", "n1", {"ready": "True"}),
    ]
    path = tmp_path / "timeline.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in entries))
    loaded = Timeline.load(path)
    assert [e.name for e in loaded.entries] == ["n1", "fault"]
    assert "+   0.75s MARK     Mark/fault" in loaded.render()


def test_a_pod_deleted_while_the_watch_was_down_is_gone_after_the_relist(tmp_path):
    """No DELETED event reaches a watch that is down: the relist says it, as client-go's
    reflector replaces its store, so the timeline keeps no ghost that stays Ready."""
    listings = [
        [POD, {**POD, "metadata": {"name": "demo-2", "ownerReferences": [{"name": "demo-abc"}]}}],
        [POD],
    ]

    def lister(*args, **kwargs):
        items = listings.pop(0)
        body = {"metadata": {"resourceVersion": "7"}, "items": items}
        return SimpleNamespace(data=json.dumps(body).encode())

    ticks = iter([10.0, 20.0])
    recorder = TimelineRecorder(
        SimpleNamespace(), "ns", tmp_path / "t.jsonl", watched=(), clock=lambda: next(ticks)
    )
    pods = Watched("Pod", lambda kube: lister, summarize_pod)
    recorder._list(pods, lister, ("ns",))
    recorder._list(pods, lister, ("ns",))  # after a disconnect: demo-2 went meanwhile

    timeline = recorder.timeline()
    assert set(timeline.states_at("Pod", 15.0)) == {"demo-1", "demo-2"}
    assert set(timeline.states_at("Pod", 25.0)) == {"demo-1"}
    (gone,) = [e for e in timeline.of("Pod") if e.type == "DELETED"]
    assert (gone.name, gone.state[RELISTED]) == ("demo-2", True)


def test_the_recorder_leaves_out_the_harness_load_pods(tmp_path):
    """Locust pods in the test's namespace are not the service's: counted as its pods they
    raised a capacity run's baseline and hid its HPA's scale-up."""
    asked = []

    def lister(*args, **kwargs):
        asked.append(kwargs.get("label_selector"))
        body = {"metadata": {"resourceVersion": "7"}, "items": [POD]}
        return SimpleNamespace(data=json.dumps(body).encode())

    recorder = TimelineRecorder(SimpleNamespace(), "ns", tmp_path / "t.jsonl", watched=())
    recorder._list(Watched("Pod", lambda kube: lister, summarize_pod), lister, ("ns",))
    assert asked == ["!kube-harness.io/load"]
