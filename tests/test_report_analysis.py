"""The report's pure parts: capacity analysis, trend verdicts, redaction, SVG charts, and the
strict JSON of result.json (pure logic, no cluster)."""

import csv
import json
import math
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from harness.assertions import Check, Evidence
from harness.load import Verdict
from harness.load.result import CpuSample, Generator, SeriesPoint, WorkerLoad
from harness.observe import Entry, Timeline
from harness.report import capacity
from harness.report.charts import Limit, Line, Marker, Panel, sparkline, ticks, time_chart, xy_chart
from harness.report.redact import MASK, redact, redact_folder, redact_value
from harness.report.trends import PastRun, Trend, trends

T0 = 1_800_000_000


def step_series(steps):
    """Per-second points for (users, requests/s, p95 ms) steps of 10 s, and a closing second."""
    points, t = [], T0
    for users, rps, p95 in steps:
        for _ in range(10):
            points.append(SeriesPoint(t, rps, 0, users, p95 / 2, p95, p95 * 1.2))
            t += 1
    points.append(SeriesPoint(t, 3, 0, steps[-1][0], 10, 10, 10))  # the partial last second
    return points


def pods(t, count):
    return [
        Entry(t, "MODIFIED", "Pod", f"demo-{i}", {"ready": True, "containers": []})
        for i in range(count)
    ]


def hpa(t, desired, current):
    state = {"desired": desired, "current": current}
    return Entry(t, "MODIFIED", "HorizontalPodAutoscaler", "demo", state)


SCALING = Timeline(
    [
        *pods(T0 - 5, 2),
        hpa(T0 - 5, 2, 2),
        hpa(T0 + 12, 3, 2),
        *pods(T0 + 15, 3),
        hpa(T0 + 25, 4, 3),
        *pods(T0 + 28, 4),
    ]
)


def test_capacity_finds_steps_knee_sustainable_throughput_and_hpa_reaction():
    series = step_series([(2, 8, 100), (4, 16, 150), (6, 22, 300), (8, 23, 900)])

    result = capacity.analyse(series, SCALING, max_p95_ms=500, max_error_rate=0.0)

    assert [s.users for s in result.steps] == [2, 4, 6, 8]
    first = result.steps[0]
    assert (first.start, first.end) == (T0 + 3, T0 + 10)  # a third of the step is warm-up
    assert (first.rps, first.p95_ms, first.ready_pods) == (8.0, 100.0, 2.0)
    assert [s.within_slo for s in result.steps] == [True, True, True, False]
    assert result.knee == capacity.Knee(8, 23.0, 900.0, "p95 900 ms above the SLO (500 ms)")
    assert result.sustainable_rps == 22.0
    assert result.sustainable_rps_per_replica == 6.69  # 22 req/s on 3.29 Ready pods (mean)
    assert result.first_scale_up_s == 12.0
    assert result.steady_state_s == 28.0  # the last scale-up is Ready 28 s after the rise
    assert result.peak_replicas == 4
    again = capacity.CapacityAnalysis.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


def generator_busy_during(start, end, *, lost_at=None):
    """One Locust process, idle except at 99% of a CPU from `start` to `end`."""
    cpu = tuple(CpuSample(T0 + i, 99.0 if start <= T0 + i < end else 20.0) for i in range(0, 41))
    return Generator("cluster", (WorkerLoad("worker-1", 1000, cpu, lost_at=lost_at),))


def test_a_step_where_the_generator_saturated_is_not_measured_nor_a_knee():
    series = step_series([(2, 8, 100), (4, 16, 150), (6, 17, 900), (8, 23, 200)])
    generator = generator_busy_during(T0 + 20, T0 + 30)

    result = capacity.analyse(
        series, SCALING, max_p95_ms=500, max_error_rate=0.0, generator=generator
    )

    third = result.steps[2]
    assert third.not_measured.startswith("worker-1 was busy >= 90%")
    assert not third.within_slo
    assert [bool(s.not_measured) for s in result.steps] == [False, False, True, False]
    assert result.knee is None  # 6 users broke p95 only because the generator could not keep up
    assert result.sustainable_rps == 23.0
    assert "load from the cluster, 1 Locust process: worker-1" in result.load_from
    again = capacity.CapacityAnalysis.from_json(json.loads(json.dumps(result.to_json())))
    assert again == result


def test_steps_after_a_lost_worker_are_not_measured():
    series = step_series([(2, 8, 100), (4, 16, 150), (6, 22, 300)])
    generator = generator_busy_during(0, 0, lost_at=T0 + 15)

    result = capacity.analyse(
        series, SCALING, max_p95_ms=500, max_error_rate=0.0, generator=generator
    )

    assert [s.not_measured for s in result.steps] == ["", "worker-1 was lost", "worker-1 was lost"]
    assert result.sustainable_rps == 8.0


def test_a_capacity_record_without_load_from_still_reads():
    series = step_series([(2, 8, 100), (4, 16, 150), (6, 22, 300)])
    raw = capacity.analyse(series, SCALING, max_p95_ms=500, max_error_rate=0.0).to_json()
    del raw["load_from"]
    for step in raw["steps"]:
        del step["not_measured"]
    assert capacity.CapacityAnalysis.from_json(raw).load_from == ""


def test_a_throughput_plateau_is_a_knee_even_within_the_latency_limit():
    series = step_series([(2, 8, 100), (4, 15, 120), (8, 17, 200)])

    result = capacity.analyse(series, Timeline([]), max_p95_ms=None, max_error_rate=None)

    assert result.knee is not None and result.knee.users == 8
    assert result.knee.reason == "throughput stopped growing: +100% users gave +13% requests/s"
    assert result.first_scale_up_s is None and result.peak_replicas is None


def test_a_recorded_capacity_analysis_that_is_broken_is_a_problem():
    analysis, problem = capacity.from_measurements({capacity.MEASUREMENT: {"steps": [1]}})

    assert analysis is None and problem.startswith("result.json: capacity analysis unreadable")
    assert capacity.from_measurements({}) == (None, None)


@pytest.mark.parametrize(
    ("figure", "before", "now", "verdict"),
    [
        ("time_to_recover_s", 3.0, 5.0, "worse"),
        ("time_to_recover_s", 3.0, 3.4, "same"),  # under a second: noise
        ("time_to_recover_s", 30.0, 33.0, "same"),  # under 20%
        ("failed_requests", 0, 1, "worse"),
        ("failed_requests", 4, 0, "better"),
        ("availability_pct", 99.9, 99.0, "worse"),  # percentage points, not relative
        ("availability_pct", 99.9, 99.8, "same"),
        ("rps", 10, 20, "changed"),  # no better direction
        ("measured: seconds to restart", 8.0, 12.0, "worse"),  # judged by its wording
    ],
)
def test_trend_verdicts(figure, before, now, verdict):
    trend = Trend("t", "label", figure, ("a", "b"), (before, now))

    assert trend.verdict == verdict


def test_trends_skip_runs_after_this_one_and_figures_never_seen_before():
    past = [
        PastRun("a", 100.0, {"t": {"restarts": 1.0}}),
        PastRun("c", 300.0, {"t": {"restarts": 9.0}}),
    ]

    (found,) = trends("b", 200.0, {"t": {"restarts": 2.0, "p95_ms": 5.0}}, {"t": "T"}, past)

    assert (found.figure, found.runs, found.values) == ("restarts", ("a", "b"), (1.0, 2.0))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("403 (Authorization: Bearer abc.def-1)", f"403 (Authorization: {MASK})"),
        ("GET /admin?token=s3cr3t&x=1", f"GET /admin?token={MASK}&x=1"),
        ('{"password": "hunter2"}', f'{{"password": "{MASK}"}}'),  # still JSON
        ("ADMIN_TOKEN=xyz", f"ADMIN_TOKEN={MASK}"),
        ("client-key-data: LS0tLS1CRUdJTi", f"client-key-data: {MASK}"),
        ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", MASK),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", f"jwt {MASK}"),
        ("login with token 9f8e7d6c5b4a refused", f"login with token {MASK} refused"),
        ("a valid admin token is required", "a valid admin token is required"),
        ("pod demo-6b8db8dbb7-2vwwv left", "pod demo-6b8db8dbb7-2vwwv left"),
        (
            '{"adminToken": "x1", "clientSecret": "x2"}',
            f'{{"adminToken": "{MASK}", "clientSecret": "{MASK}"}}',
        ),
        ("dbPassword=x3", f"dbPassword={MASK}"),
        ("fetch https://bob:x4@db.example/x", f"fetch https://bob:{MASK}@db.example/x"),
        ("GET /blob?sv=1&sig=x5&se=2", f"GET /blob?sv=1&sig={MASK}&se=2"),
        (
            "?X-Amz-Signature=x6&X-Amz-Credential=x7",
            f"?X-Amz-Signature={MASK}&X-Amz-Credential={MASK}",
        ),
        ("run --password x8 --user bob", f"run --password {MASK} --user bob"),
        (
            '{"name": "ADMIN_TOKEN", "value": "x9"}',
            f'{{"name": "ADMIN_TOKEN", "value": "{MASK}"}}',
        ),
        ("- name: DB_PASSWORD\n  value: x10", f"- name: DB_PASSWORD\n  value: {MASK}"),
        ("tls.key: LS0tx11", f"tls.key: {MASK}"),
        ("ghp_" + "a" * 36 + " and xoxb-1234-5678-abcd", f"{MASK} and {MASK}"),
        (
            'Authorization: Digest username="bob", response="x12"',
            f'Authorization: {MASK}"bob", response="{MASK}"',
        ),
        ('"Authorization: Bearer x13\\nnext"', f'"Authorization: {MASK}\\nnext"'),
        (  # empty values: nothing to mask, and nothing after them swallowed
            '{"password": "", "user": "bob", "x": "", "y": 1}',
            '{"password": "", "user": "bob", "x": "", "y": 1}',
        ),
        ('token: ""\nother: keep me\nname: ""', 'token: ""\nother: keep me\nname: ""'),
        ("signal: SIGTERM, design: fine, author: me", "signal: SIGTERM, design: fine, author: me"),
    ],
)
def test_redact_masks_credentials_in_text_and_nothing_else(text, expected):
    assert redact(text) == expected


def test_redact_value_masks_by_key_then_inside_strings():
    value = {
        "token": "x",
        "admin token": "y",
        "adminToken": "y2",
        "pod": "p",
        "nested": [{"note": "password=z"}],
        "env": [{"name": "ADMIN_TOKEN", "value": "w"}, {"name": "MODE", "value": "fast"}],
    }

    assert redact_value(value) == {
        "token": MASK,
        "admin token": MASK,
        "adminToken": MASK,
        "pod": "p",
        "nested": [{"note": f"password={MASK}"}],
        "env": [{"name": "ADMIN_TOKEN", "value": MASK}, {"name": "MODE", "value": "fast"}],
    }


def test_charts_are_well_formed_svg_even_with_gaps_and_nothing_to_draw():
    chart = time_chart(
        [
            Panel("load", "req/s", [Line("rps", [(0, 1), (1, None), (2, 3)], "#000")]),
            Panel("failures", "req/s", [Line("failed", [(1, 2)], "#f00", bars=True)]),
            Panel("empty", "n", []),
        ],
        [Marker(1, "fault <injected> & more"), Marker(99, "after the end")],
        start=0,
        end=3,
        title="a & b",
    )
    svg = ElementTree.fromstring(chart)
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "fault <injected> & more" in texts and "after the end" not in texts
    assert "nothing recorded" in texts
    ElementTree.fromstring(
        xy_chart([], title="t", x_label="x", y_label="y", hlines=[Limit(5, "SLO")])
    )
    assert sparkline([None, None]) == ""
    ElementTree.fromstring(sparkline([1, None, 3], worse=True))


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        (0, [0, 1]),
        (5, [0, 2, 4, 6]),
        (1969.7, [0, 500, 1000, 1500, 2000]),
        (0.3, [0, 0.1, 0.2, 0.3]),
    ],
)
def test_axis_ticks_are_round_and_cover_the_top(top, expected):
    assert ticks(top) == pytest.approx(expected)


def test_evidence_writes_strict_json_without_infinity(tmp_path):
    verdict = Verdict("replicas never above 5", 5, 5, "replicas", "pass")
    evidence = Evidence("hpa", Timeline([]), checks=[Check(verdict, 0, math.inf)])
    evidence.measurements["unknown"] = math.nan

    path = evidence.write(tmp_path)

    def refuse(constant):
        raise ValueError(constant)

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["verdicts"][0]["until"] is None
    assert data["measurements"] == {"unknown": None}


# One secret per shape; each is planted in every kind of file a run folder holds.
PLANTED = {
    "bearer": "Authorization: Bearer pl4nted-bearer-01",
    "url": "fetch https://bob:pl4nted-url-02@db.example/x",
    "sig": "GET /blob?sv=1&sig=pl4nted-sig-03&se=2",
    "amz": "GET /o?X-Amz-Signature=pl4nted-amz-04&X-Amz-Date=1",
    "flag": "run --password pl4nted-flag-05 --user bob",
    "env-json": '{"name": "ADMIN_TOKEN", "value": "pl4nted-env-06"}',
    "env-yaml": "- name: DB_PASSWORD\n  value: pl4nted-env-07",
    "tls": "tls.key: pl4nted-tls-08",
    "github": "ghp_pl4nted0github0token0000000000000009",
    "slack": "xoxb-1234-pl4nted-slack-10",
    "aws": "AKIAPL4NTED0AWS00011",
    "camel": "adminToken=pl4nted-camel-12",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJwbDRudGVkIjoxM30.pl4nted-jwt-13",
    "pem": "-----BEGIN PRIVATE KEY-----\npl4nted-pem-14\n-----END PRIVATE KEY-----",
    "digest": 'Authorization: Digest username="bob", response="pl4nted-digest-15"',
    "token": "token=pl4nted-token-16",
}
SECRETS = [re.search(r"pl4nted[-0-9a-z]*|AKIAPL4NTED0AWS00011", t)[0] for t in PLANTED.values()]


def plant_run_folder(run: Path) -> None:
    """A run folder with every shape in every kind of file the harness writes there."""
    text = "\n".join(PLANTED.values()) + "\n"
    (run / "t1" / "diagnostics").mkdir(parents=True)
    (run / "t1" / "diagnostics" / "demo-abc.log").write_text(text)
    (run / "t1" / "diagnostics" / "describe.yaml").write_text(text)
    (run / "t1" / "kubelet").write_text(text)  # component logs have no suffix
    with (run / "t1" / "locust_failures.csv").open("w", newline="") as failures:
        csv.writer(failures).writerows([("Method", "Name", "Error"), *(
            ("GET", "/x", line.replace("\n", " ")) for line in PLANTED.values()
        )])  # fmt: skip
    (run / "t1" / "locust.html").write_text(f"<script>var stats = {json.dumps(text)};</script>")
    journal = {"run": list(PLANTED.values()), "clientSecret": "pl4nted-key-17",
               "env": [{"name": "ADMIN_TOKEN", "value": "pl4nted-key-18"}]}  # fmt: skip
    (run / "t1" / "journal.json").write_text(json.dumps(journal, indent=2))
    (run / "t1" / "timeline.jsonl").write_text(
        "".join(
            json.dumps({"t": i, "note": line}) + "\n" for i, line in enumerate(PLANTED.values())
        )
    )
    suite = ElementTree.Element("testsuite")
    case = ElementTree.SubElement(suite, "testcase", name="t1")
    ElementTree.SubElement(case, "failure", message=PLANTED["bearer"]).text = text
    (run / "junit.xml").write_bytes(ElementTree.tostring(suite))


def test_every_file_of_a_run_folder_is_redacted_and_still_reads(tmp_path):
    run = tmp_path / "run"
    plant_run_folder(run)
    screenshot = b"\x89PNG\r\n\x1a\n\0" + PLANTED["token"].encode()
    (run / "t1" / "screenshot.png").write_bytes(screenshot)

    changed = redact_folder(run)

    files = [p for p in run.rglob("*") if p.is_file() and p.suffix != ".png"]
    assert sorted(changed) == sorted(files)
    secrets = [*SECRETS, "pl4nted-key-17", "pl4nted-key-18"]
    for path in files:
        left = [s for s in secrets if s in path.read_text()]
        assert not left, f"{path.relative_to(run)} still holds {left}"
    json.loads((run / "t1" / "journal.json").read_text())
    [json.loads(line) for line in (run / "t1" / "timeline.jsonl").read_text().splitlines()]
    ElementTree.fromstring((run / "junit.xml").read_text())
    assert (run / "t1" / "screenshot.png").read_bytes() == screenshot  # binary: left alone
    assert redact_folder(run) == []  # nothing more to mask


def test_a_symlink_in_a_run_folder_is_not_followed(tmp_path):
    outside = tmp_path / "outside.log"
    outside.write_text(PLANTED["token"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "linked.log").symlink_to(outside)
    assert redact_folder(run) == []
    assert outside.read_text() == PLANTED["token"]


def test_only_a_run_folders_records_are_rewritten(tmp_path):
    """`harness report` pointed at a checkout rewrites nothing of it."""
    (tmp_path / "spec.yaml").write_text("token_secret: demo-admin\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "kube.py").write_text("def f(kubeconfig: Path): ...\n")
    assert redact_folder(tmp_path) == []
    assert (tmp_path / "spec.yaml").read_text() == "token_secret: demo-admin\n"


def test_each_versions_share_of_the_answers_per_second():
    from harness.report.series import version_shares

    points = [
        SeriesPoint(10, 4, 0, 1, 10.0, 10.0, 10.0, versions={"v1": 4}),
        SeriesPoint(11, 4, 0, 1, 10.0, 10.0, 10.0, versions={"v1": 1, "v2": 3}),
        SeriesPoint(12, 4, 0, 1, 10.0, 10.0, 10.0),  # no answer named a version: no share
        SeriesPoint(13, 2, 0, 1, 10.0, 10.0, 10.0, versions={"v2": 2}),
    ]
    assert version_shares(points) == {
        "v1": [(10.5, 100.0), (11.5, 25.0), (13.5, 0.0)],
        "v2": [(10.5, 0.0), (11.5, 75.0), (13.5, 100.0)],
    }
    assert version_shares([]) == {}


def test_a_rollouts_own_marks_are_never_the_disturbance() -> None:
    from harness.observe import Entry
    from harness.report.resilience import disturbance

    marks = [
        Entry(1, "MARK", "Mark", "deployed"),
        Entry(2, "MARK", "Mark", "argo: Healthy"),
        Entry(7, "MARK", "Mark", "release starts"),
        Entry(8, "MARK", "Mark", "argo: Progressing, step 0, weight 25%"),
    ]
    found = disturbance(marks)
    assert found is not None and found.name == "release starts"
