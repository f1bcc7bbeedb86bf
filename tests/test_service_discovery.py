"""Service discovery (harness.service_discovery): the client's script, its record, and the
checks that judge the lookups and the requests by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from shell_stubs import run_script

from harness.assertions import lookups_answered, requests_by_name
from harness.service_discovery import CLIENT_SCRIPT, Round, client_pod, read_rounds
from harness.spec import load_spec
from harness.suite import DEMO_SPEC

# busybox nslookup's answer: the server's address first, the name's last.
ANSWER = (
    "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n"
    "Name:\tdemo.ns1.svc.cluster.local\nAddress: 10.96.7.8\n"
)


def run_client(tmp_path: Path, nslookup: str, wget: str = "exit 0") -> tuple[list[str], str]:
    """CLIENT_SCRIPT for two rounds, its commands stubbed."""
    return run_script(
        CLIENT_SCRIPT,
        tmp_path,
        stubs={"nslookup": nslookup, "wget": wget, "timeout": 'shift; exec "$@"', "sleep": ""},
        env={"DNS_NAME": "demo.ns1.svc", "HOST": "demo.ns1.svc:80", "PORT": "80",
             "PATH_": "/", "ROUNDS": "2"},
    )  # fmt: skip


def test_the_client_looks_the_whole_name_up_and_requests_the_address_it_got(tmp_path) -> None:
    out, calls = run_client(tmp_path, f"printf '{ANSWER}'")
    assert out == ["ROUND answered/ok", "ROUND answered/ok"]
    assert "nslookup -type=a demo.ns1.svc.cluster.local" in calls
    assert "wget -q -O /dev/null --header Host: demo.ns1.svc:80 http://10.96.7.8:80/" in calls


def test_nxdomain_no_answer_and_a_failed_request_are_each_recorded(tmp_path) -> None:
    out, calls = run_client(tmp_path, 'echo "** server can\'t find x: NXDOMAIN"; exit 1')
    assert out == ["ROUND nxdomain/skipped"] * 2 and "wget" not in calls
    out, _ = run_client(tmp_path, "echo ';; connection timed out'; exit 1")
    assert out == ["ROUND no answer/skipped"] * 2
    out, _ = run_client(tmp_path, f"printf '{ANSWER}'", wget="exit 1")
    assert out == ["ROUND answered/failed"] * 2
    # An answer without a record names only the server's address: no answer, no request.
    out, _ = run_client(tmp_path, "printf 'Server:\\t\\t10.96.0.10\\nAddress:\\t10.96.0.10:53\\n'")
    assert out == ["ROUND no answer/skipped"] * 2


def test_rounds_are_read_with_the_kubelets_timestamps() -> None:
    log = (
        "2026-12-03T16:30:00.250000000Z ROUND answered/ok\n"
        "2026-12-03T16:30:00.500000000Z ROUND no answer/skipped\n"
        "2026-12-03T16:30:00.600000000Z something else\n"
    )
    first, second = read_rounds(log)
    assert (first.lookup, first.request) == ("answered", "ok")
    assert (second.lookup, second.request) == ("no answer", "skipped")
    assert second.t - first.t == pytest.approx(0.25)


def test_the_client_pod_never_pulls_and_is_bounded() -> None:
    pod = client_pod("ns1", image="localhost/kube-harness/busybox:1.35", dns_name="demo.ns1.svc",
                     port=80, path="/", host="demo.ns1.svc:80", rounds=8)  # fmt: skip
    container = pod["spec"]["containers"][0]
    assert (
        container["imagePullPolicy"] == "IfNotPresent" and pod["spec"]["restartPolicy"] == "Never"
    )
    assert {"name": "ROUNDS", "value": "8"} in container["env"]
    assert container["securityContext"]["runAsNonRoot"] is True


def _rounds(*outcomes: str) -> list[Round]:
    return [Round(100.0 + i, *o.split("/")) for i, o in enumerate(outcomes)]


def test_a_window_the_rounds_do_not_cover_is_inconclusive() -> None:
    rounds = _rounds("answered/ok", "answered/ok")  # at 100 and 101, then nothing
    for check in (
        lookups_answered(rounds, name="demo", budget=0, since=100.0, until=130.0),
        requests_by_name(rounds, name="demo", budget=0, since=100.0, until=130.0),
    ):
        assert check.verdict.status == "inconclusive"
        assert "no round recorded for 29.0s from +1.0s" in check.verdict.note


def test_lookups_pass_within_the_budget_and_fail_naming_the_window() -> None:
    rounds = _rounds("answered/ok", "nxdomain/skipped", "no answer/skipped", "answered/ok")
    kept = lookups_answered(rounds, name="demo", budget=2, since=100.0, until=104.0)
    assert kept.passed
    broken = lookups_answered(rounds, name="demo", budget=0, since=100.0, until=104.0)
    assert not broken.passed and broken.verdict.measured == 2
    assert "from +1.0s (nxdomain/skipped) to +2.0s (no answer/skipped)" in broken.verdict.note
    none = lookups_answered(rounds, name="demo", budget=0, since=200.0, until=300.0)
    assert none.verdict.status == "inconclusive"


def test_requests_count_only_rounds_that_had_an_address() -> None:
    rounds = _rounds("answered/ok", "nxdomain/skipped", "answered/failed")
    check = requests_by_name(rounds, name="demo", budget=0, since=100.0, until=103.0)
    assert not check.passed and check.verdict.measured == 1 and "1 of 2" in check.verdict.note
    skipped = _rounds("nxdomain/skipped")
    check = requests_by_name(skipped, name="demo", budget=0, since=100.0, until=101.0)
    assert check.verdict.status == "inconclusive"


def test_the_demo_promises_no_failed_lookup_or_request() -> None:
    promised = load_spec(DEMO_SPEC).service("demo").service_discovery
    assert promised is not None
    assert (promised.max_failed_lookups, promised.max_failed_requests) == (0, 0)
