"""One run's view from the records of several Locust processes (pure logic, hand-made records)."""

from __future__ import annotations

import json

import pytest

from harness.load.merge import (
    SINGLE,
    complete_seconds,
    generator,
    generator_verdict,
    latency_bucket,
    merge_seconds,
    percentile,
    saturation,
    version_reader,
)
from harness.load.result import CpuSample


def second(worker, t, requests, *, failures=0, users=1, latency=None, pods=None, versions=None):
    return {
        "kind": "second",
        "worker": worker,
        "t": t,
        "requests": requests,
        "failures": failures,
        "users": users,
        "latency": latency if latency is not None else ({"10": requests} if requests else {}),
        "pods": pods or {},
        "versions": versions or {},
    }


def cpu(worker, t, percent, waiting=0.0):
    return {
        "kind": "cpu",
        "worker": worker,
        "t": t,
        "percent": percent,
        "waiting": waiting,
        "seconds": 1.0,
    }


def joined(worker, t=0.0):
    return {"kind": "worker_joined", "worker": worker, "t": t}


@pytest.mark.parametrize(
    ("ms", "bucket"), [(0.4, 0), (42.6, 43), (123.0, 120), (1234.0, 1200), (12345.0, 12000)]
)
def test_latency_buckets_round_like_locust(ms, bucket):
    assert latency_bucket(ms) == bucket


def test_percentiles_are_nearest_rank_over_the_histogram():
    histogram = {10: 90, 200: 9, 3000: 1}
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.95) == 200
    assert percentile(histogram, 0.99) == 200
    assert percentile(histogram, 1.0) == 3000
    assert percentile({}, 0.5) is None


def test_seconds_of_several_workers_are_summed_with_exact_percentiles():
    records = [
        second("w1", 5, 10, failures=1, users=2, latency={"10": 10}, pods={"a": 6, "b": 4}),
        second("w2", 5, 10, users=3, latency={"500": 10}, pods={"a": 10}),
        second("w1", 6, 4, latency={"20": 4}),
    ]
    records[0]["versions"], records[1]["versions"] = {"v1": 8, "v2": 2}, {"v2": 10}
    first, later = merge_seconds(records)
    assert (first.t, first.requests, first.failures, first.users) == (5, 20, 1, 5)
    assert first.versions == {"v1": 8, "v2": 12}
    assert (first.p50_ms, first.p95_ms) == (10.0, 500.0)
    assert first.pods == {"a": 16, "b": 4}
    assert (later.t, later.requests, later.p99_ms) == (6, 4, 20.0)


def test_live_reads_hold_back_seconds_a_worker_has_not_closed():
    records = [joined("w1"), joined("w2"), second("w1", 5, 10), second("w1", 6, 10)]
    records.append(second("w2", 5, 10))
    assert [p.t for p in merge_seconds(complete_seconds(records))] == [5]
    # Once w2 is lost it no longer holds the others back.
    lost = [*records, {"kind": "worker_lost", "worker": "w2", "t": 7.0}]
    assert [p.t for p in merge_seconds(complete_seconds(lost))] == [5, 6]


def test_a_worker_that_joined_but_sent_nothing_holds_every_second_back():
    records = [joined("w1"), joined("w2"), second("w1", 5, 10)]
    assert merge_seconds(complete_seconds(records)) == []


def test_a_single_process_is_never_held_back():
    records = [second(SINGLE, 5, 3), second(SINGLE, 6, 3)]
    assert [p.t for p in merge_seconds(complete_seconds(records))] == [5, 6]


def test_the_generator_names_each_worker_with_its_requests_and_cpu():
    records = [joined("w1"), joined("w2"), second("w1", 5, 10), second("w2", 5, 7)]
    records += [cpu("w1", 5.5, 40.0), cpu("w1", 6.5, 60.0), cpu("w2", 5.5, 20.0)]
    gen = generator(records, "host")
    assert [(w.name, w.requests) for w in gen.workers] == [("w1", 10), ("w2", 7)]
    assert (gen.workers[0].mean_busy, gen.workers[0].peak_busy) == (50.0, 60.0)
    assert "load from the host, 2 Locust processes: w1: 10 requests" in gen.describe()
    assert generator_verdict(gen, since=0, locust_warned=False) is None


def test_a_lost_worker_makes_the_run_unreliable_and_is_named():
    records = [joined("w1", 100.0), joined("w2", 100.0), second("w1", 105, 10)]
    records.append({"kind": "worker_lost", "worker": "w2", "t": 112.0})
    gen = generator(records, "host")
    verdict = generator_verdict(gen, since=100.0, locust_warned=False)
    assert verdict.startswith(
        "load generator saturated: w2 was lost 12s into the run (no heartbeat"
    )
    assert "(LOST)" in gen.describe()


def test_a_lagging_worker_makes_the_run_unreliable_and_is_named():
    records = [
        joined("w1"),
        second("w1", 5, 10),
        {"kind": "worker_lagging", "worker": "w1", "t": 9},
    ]
    verdict = generator_verdict(generator(records, "host"), since=0, locust_warned=False)
    assert "w1 fell behind: its records stopped arriving 9s into the run" in verdict


def test_one_saturated_worker_among_idle_ones_makes_the_run_unreliable():
    records = [cpu("w1", t, 10.0) for t in range(10)] + [cpu("w2", t, 95.0) for t in range(3)]
    verdict = generator_verdict(generator(records, "host"), since=0, locust_warned=False)
    assert verdict.startswith("load generator saturated: w2 was busy >= 90%")
    assert "w1" not in verdict


def test_locusts_own_cpu_warning_makes_the_run_unreliable():
    verdict = generator_verdict(generator([], "host"), since=0, locust_warned=True)
    assert "Locust warned that its CPU was above 90%" in verdict


@pytest.mark.parametrize(
    ("busy", "saturated"),
    [
        ([95, 95, 50, 95, 95], False),  # never 3 s in a row
        ([95, 95, 95], True),
        ([10, 10], False),
        ([], False),
    ],
)
def test_saturation_needs_three_busy_seconds_in_a_row(busy, saturated):
    samples = [CpuSample(10.0 + i, p) for i, p in enumerate(busy)]
    assert (saturation(samples, since=10.0) is not None) is saturated


def test_waiting_for_a_cpu_counts_as_busy():
    samples = [CpuSample(1.0 + i, 40.0, waiting=55.0) for i in range(3)]
    assert "worst second: 40% on a CPU + 55% waiting for one" in saturation(samples, since=0)


def test_start_up_cpu_is_not_load():
    samples = [CpuSample(t, 100.0) for t in (1.0, 2.0, 3.0)] + [CpuSample(4.0, 5.0)]
    assert saturation(samples, since=3.5) is None


class Response:
    def __init__(self, headers=None, body=None):
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


@pytest.mark.parametrize(
    ("source", "response", "version"),
    [
        ("header:X-App-Version", Response({"X-App-Version": "v2"}), "v2"),
        ("header:X-App-Version", Response({"X-Other": "v2"}), None),
        ("header:X-App-Version", Response({"X-App-Version": ""}), None),
        ("header:X-App-Version", Response(None), None),  # no answer at all
        ("json:version", Response(body='{"version": "v2", "pod": "a"}'), "v2"),
        ("json:build.version", Response(body='{"build": {"version": 3}}'), "3"),
        ("json:build.version", Response(body='{"build": {"version": {"x": 1}}}'), None),
        ("json:version", Response(body='{"other": 1}'), None),
        ("json:version", Response(body="[1, 2]"), None),
        ("json:version", Response(body="not json"), None),
        ("json:version", Response(body=None), None),
    ],
)
def test_the_version_is_read_from_a_header_or_a_json_field(source, response, version):
    assert version_reader(source)(response) == version


def test_an_unknown_version_source_is_refused():
    with pytest.raises(ValueError, match="neither header:NAME nor json:FIELD"):
        version_reader("body:version")
