"""Reports written from recorded runs kept as test data (tests/data/runs/): valid runs, broken
runs (a partial report that says what is missing), empty runs, trends, secrets, the latest
link, and the HTML as headless Chromium shows it."""

import json
import re
import secrets
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from harness.assertions import recovered
from harness.errors import HarnessError
from harness.report import (
    HISTORY_DIR,
    SCREENSHOT_FILE,
    capacity,
    earlier_runs,
    resilience,
    screenshot,
    update_latest,
    write_report,
)
from harness.report.model import read_test

RUNS = Path(__file__).parent / "data" / "runs"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
DELETED_POD = "scenarios.test_self_healing.py__test_deleted_pod_is_replaced_demo"
LIVENESS = "scenarios.test_probes.py__test_failing_liveness_restarts_the_container_demo"
HPA = "scenarios.test_hpa_scaling.py__test_hpa_scales_up_under_cpu_load_and_back_down_demo"


def copy_run(name: str, tmp_path: Path, run_id: str | None = None) -> Path:
    """A writable copy of a recorded run (reports are written into the run folder)."""
    return Path(shutil.copytree(RUNS / name, tmp_path / "reports" / (run_id or name)))


def strict_json(path: Path):
    def refuse(constant):
        raise ValueError(f"{path.name} holds {constant}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_valid_run_gets_all_three_files_with_its_verdicts_and_figures(tmp_path):
    files = write_report(copy_run("valid-suite", tmp_path))

    assert files.status == "passed" and files.problems == ()
    results = strict_json(files.json)
    assert results["schema"] == "kube-harness/report" and results["version"] == 1
    assert results["counts"] == {"tests": 5, "passed": 5, "failed": 0, "skipped": 0, "unknown": 0}
    tests = {t["id"]: t for t in results["tests"]}
    deleted = tests[DELETED_POD]
    assert deleted["label"] == "pod deleted" and deleted["kind"] == "resilience"
    assert deleted["figures"]["time_to_detect_s"] == pytest.approx(0.02)
    assert deleted["figures"]["time_to_recover_s"] == pytest.approx(2.96)
    assert deleted["figures"]["failed_requests"] == 0
    assert deleted["figures"]["availability_pct"] == 100.0
    assert tests[LIVENESS]["figures"]["restarts"] == 1
    assert tests[HPA]["figures"]["first_scale_up_s"] == pytest.approx(11.4)
    assert all(v["status"] == "pass" for t in results["tests"] for v in t["verdicts"])
    assert results["key_figures"][DELETED_POD]["time_to_recover_s"] == pytest.approx(2.96)

    html = files.html.read_text()
    assert html.count("<svg") >= 5  # one timeline chart per test
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\(""", html)  # opens offline
    assert "<script" not in html
    summary = files.markdown.read_text()
    assert "| pod deleted | ✅ passed | pod deleted | 0.0 s | 3.0 s | 0 | 100.00% | 0 | 2/2 |" in (
        summary
    )


def test_a_capacity_run_shows_throughput_per_replica_knee_and_hpa_reaction(tmp_path):
    run = copy_run("valid-capacity", tmp_path)

    files = write_report(run)

    (test,) = strict_json(files.json)["tests"]
    assert test["kind"] == "capacity"
    recorded = test["capacity"]
    assert [s["users"] for s in recorded["steps"]] == [2, 4, 6, 8]
    assert recorded["sustainable_rps_per_replica"] == pytest.approx(4.22)
    assert recorded["knee"]["users"] == 8
    assert recorded["first_scale_up_s"] == pytest.approx(15.27)
    # What the scenario judged is what its record still gives.
    record = read_test(next(run.iterdir()))
    again = capacity.analyse(
        record.loads[0].series, record.timeline, max_p95_ms=500, max_error_rate=0.0
    )
    again = json.loads(json.dumps(again.to_json()))
    assert again["steps"] == recorded["steps"] and again["knee"]["rps"] == recorded["knee"]["rps"]
    figures = strict_json(files.json)["key_figures"][test["id"]]
    assert figures["knee_rps"] == pytest.approx(23.05)
    summary = files.markdown.read_text()
    assert "- Sustainable at the SLO: **4.22 req/s per replica** (21.10 req/s in total)" in summary
    assert "- Knee: 23.05 req/s at 8 users: p95 585 ms above the SLO (500 ms)" in summary
    html = files.html.read_text()
    assert "Latency against throughput" in html and "Replicas against load" in html


def test_a_failed_run_names_the_broken_promise(tmp_path):
    files = write_report(copy_run("valid-failed-hpa", tmp_path))

    assert files.status == "failed"
    summary = files.markdown.read_text()
    assert "**hpa scaling**: cpu load: error rate: 0.14% (limit 0.00%)" in summary
    results = strict_json(files.json)
    (hpa,) = results["tests"]
    assert hpa["figures"]["failed_requests"] == 1
    # The recorded result.json has `until: Infinity`; the report holds null instead.
    assert any(v["name"].startswith("replicas of demo") for v in hpa["verdicts"])


def test_repeated_runs_are_counted_per_test_and_a_flaky_one_is_named(tmp_path):
    """--repeat 3: a test that passed 2 of 3 times is reported flaky, not hidden."""
    run = tmp_path / "reports" / "repeat"
    source = RUNS / "valid-suite" / LIVENESS
    for i, passed in ((1, True), (2, False), (3, True)):
        copy = Path(shutil.copytree(source, run / f"{LIVENESS}-run{i}of3"))
        result = json.loads((copy / "result.json").read_text())
        (copy / "result.json").write_text(json.dumps({**result, "passed": passed}))

    files = write_report(run)

    (repeat,) = strict_json(files.json)["repeats"]
    assert repeat["passed"] == 2 and repeat["runs"] == 3 and repeat["verdict"] == "flaky"
    assert "| 2 of 3 | 🔁 flaky |" in files.markdown.read_text()
    assert "Repeated runs" in files.html.read_text()


def test_a_broken_run_gives_a_partial_report_that_says_what_is_missing(tmp_path):
    run = copy_run("invalid-broken", tmp_path)
    files = write_report(run, junit_xml=RUNS / "invalid-broken.junit.xml")

    assert files.status == "failed"
    summary = files.markdown.read_text()
    for missing in (
        "result.json unreadable (JSONDecodeError",
        "timeline.jsonl: 2 unreadable line(s) skipped",
        "load-1: 1 unreadable record(s) skipped",
        "load-1/load-events.jsonl missing",
        "no summary (Locust ended early)",
        "1 verdict(s) without a name or status skipped",
        "result.json is not a JSON object",
        "nothing recorded: the folder holds no result, timeline or load record",
        "result.json missing: the test failed before judging (see diagnostics/)",
    ):
        assert missing in summary, missing
    results = strict_json(files.json)
    tests = {t["id"]: t for t in results["tests"]}
    rollout = tests[
        "scenarios.test_zero_downtime_rollout.py__test_broken_image_is_detected_and_rolled_back_demo"
    ]
    assert rollout["status"] == "failed" and rollout["diagnostics"] == (
        "scenarios.test_zero_downtime_rollout.py__test_broken_image_is_detected_and_rolled_back_demo"
        "/diagnostics"
    )
    # What could still be read is there: the deleted pod's timeline despite its broken lines.
    assert tests[DELETED_POD]["figures"]["time_to_recover_s"] == pytest.approx(2.96)
    assert (run / "junit.xml").is_file()
    assert "Missing or unreadable" in files.html.read_text()


def test_an_unreadable_junit_xml_is_a_problem_not_a_crash(tmp_path):
    files = write_report(
        copy_run("valid-suite", tmp_path), junit_xml=RUNS / "invalid-truncated.junit.xml"
    )

    assert any("JUnit XML junit.xml unreadable (ParseError" in p for p in files.problems)
    assert files.status == "passed"


def test_junit_outcomes_count_tests_that_wrote_no_report_folder(tmp_path):
    files = write_report(
        copy_run("valid-suite", tmp_path), junit_xml=RUNS / "valid-suite.junit.xml"
    )

    results = strict_json(files.json)
    assert results["junit"]["tests"] == 8
    assert (results["junit"]["passed"], results["junit"]["failed"]) == (6, 1)
    assert results["junit"]["failures"] == [
        {
            "test": "tests.test_report::test_failing_unit_test",
            "message": "AssertionError: admin call failed with Authorization: [redacted]",
        }
    ]
    assert files.status == "failed"  # a unit test failed, though every scenario passed
    durations = {t["id"]: t["duration_s"] for t in results["tests"]}
    assert durations[HPA] == pytest.approx(78.402)


def test_an_empty_run_folder_gets_a_report_that_says_so(tmp_path):
    run = tmp_path / "reports" / "20261123-000000-beef"  # not even created

    files = write_report(run)

    assert files.status == "empty"
    assert strict_json(files.json)["tests"] == []
    assert "no test recorded anything into this run folder" in files.markdown.read_text()
    assert "No test recorded anything" in files.html.read_text()


def test_a_run_of_unit_tests_only_lists_them_without_inventing_verdicts(tmp_path):
    run = copy_run("valid-unit-only", tmp_path)

    files = write_report(run)

    results = strict_json(files.json)
    assert [t["kind"] for t in results["tests"]] == ["recorded", "recorded"]
    assert all(t["verdicts"] == [] for t in results["tests"])
    assert files.status == "incomplete"  # without JUnit nobody says how they ended
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_chaos_faults" '
        'name="test_dns_failure_fails_lookups_from_the_pod_until_reverted[demo]" time="9"/>'
        '<testcase classname="tests.test_chaos_faults" '
        'name="test_partitioned_pod_leaves_the_endpoints_and_comes_back[demo]" time="7"/>'
        "</testsuite></testsuites>"
    )
    assert write_report(run, junit_xml=junit).status == "passed"


def test_trends_show_how_key_figures_moved_and_flag_regressions(tmp_path):
    reports = tmp_path / "reports"
    earlier = write_report(copy_run("valid-suite", tmp_path, "20261122-030916-aaaa"))
    results = strict_json(earlier.json)
    results["started"] -= 86400  # the nightly run of the day before
    results["key_figures"][DELETED_POD]["time_to_recover_s"] = 1.0  # it used to recover faster
    results["key_figures"][DELETED_POD]["failed_requests"] = 3.0  # and used to fail more
    earlier.json.write_text(json.dumps(results))
    later = write_report(copy_run("valid-suite", tmp_path, "20261124-030916-cccc"))
    later_results = strict_json(later.json)
    later_results["started"] += 86400
    later.json.write_text(json.dumps(later_results))
    (reports / "not-a-report").mkdir()
    (reports / "not-a-report" / "results.json").write_text("{")
    run = copy_run("valid-suite", tmp_path, "20261123-030916-bbbb")
    shutil.rmtree(reports / HISTORY_DIR)  # run folders from before the history (its own test)

    history = earlier_runs(reports, run)
    files = write_report(run, history=history)

    assert [p.parent.name for p in history] == [
        "20261122-030916-aaaa",
        "20261124-030916-cccc",
        "not-a-report",
    ]
    trends = {(t["test"], t["figure"]): t for t in strict_json(files.json)["trends"]}
    recover = trends[(DELETED_POD, "time_to_recover_s")]
    assert recover["runs"] == ["20261122-030916-aaaa", "20261123-030916-bbbb"]  # not the later
    assert recover["values"] == [1.0, pytest.approx(2.96)]
    assert recover["verdict"] == "worse"
    assert trends[(DELETED_POD, "failed_requests")]["verdict"] == "better"
    assert trends[(DELETED_POD, "availability_pct")]["verdict"] == "same"
    summary = files.markdown.read_text()
    assert "| pod deleted | time to recover | 1.0 s | 3.0 s | ⚠️ worse (+196%) |" in summary
    assert any("not-a-report/results.json: unreadable" in p for p in files.problems)
    assert "Trends over 2 runs" in files.html.read_text()


def test_no_secret_reaches_any_report_file(tmp_path):
    secret = f"s3cr3t-{secrets.token_hex(12)}"
    run = copy_run("valid-suite", tmp_path)
    test = run / DELETED_POD
    result = json.loads((test / "result.json").read_text())
    result["verdicts"][0]["note"] = f"POST /admin/crash: 403 (Authorization: Bearer {secret})"
    result["measurements"]["admin token"] = secret
    result["scenario"] = f"pod deleted with password={secret}"
    (test / "result.json").write_text(json.dumps(result))
    with (test / "timeline.jsonl").open("a") as timeline:
        for entry in (
            {"kind": "Mark", "name": f"rotated token={secret}", "state": {"token": secret}},
            {"kind": "Mark", "name": "call", "state": {"header": f"Bearer {secret}"}},
            {"kind": "Event", "name": "e", "state": {"reason": "X", "message": secret}},
        ):
            timeline.write(json.dumps({"t": 1795403540.0, "type": "MARK", **entry}) + "\n")
    with (test / "load-1" / "load-events.jsonl").open("a") as events:
        failure = {
            "kind": "failure", "t": 1795403540.0, "end": 1795403540.1, "method": "GET",
            "name": f"/admin?token={secret}", "error": f"HTTPError 403 for /admin?token={secret}",
            "pod": None,
        }  # fmt: skip
        events.write(json.dumps(failure) + "\n")
    (test / "diagnostics").mkdir()
    (test / "diagnostics" / "pods.json").write_text(json.dumps({"env": secret}))
    (test / "journal.json").write_text(json.dumps({"configuration": {"token": secret}}))
    (run / "kubeconfig").write_text(f"users:\n- user:\n    client-key-data: {secret}\n")
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase classname="tests.test_x" name="test_y">'
        f'<failure message="login with token {secret} refused, Basic {secret}"/>'
        "</testcase></testsuite></testsuites>"
    )

    files = write_report(run, junit_xml=junit)

    written = [files.html, files.markdown, files.json, files.junit]
    for path in written:
        text = path.read_text()
        assert secret not in text, f"{path.name} holds the secret"
        assert "dev-only-admin-token" not in text  # the demo service's real admin token
    assert strict_json(files.json)["tests"][2]["measurements"]["admin token"] == "[redacted]"
    assert "[redacted]" in files.html.read_text()


def test_latest_points_at_the_run_just_reported(tmp_path):
    reports = tmp_path / "reports"
    first = copy_run("valid-unit-only", tmp_path, "20261123-010000-aaaa")
    second = copy_run("valid-unit-only", tmp_path, "20261123-020000-bbbb")

    link = update_latest(reports, first)
    assert link.resolve() == first.resolve()
    update_latest(reports, second)
    assert link.readlink() == Path("20261123-020000-bbbb")  # relative: reports can move
    assert sorted(p.name for p in link.iterdir()) == sorted(p.name for p in second.iterdir())
    files = write_report(link)
    assert files.directory == second.resolve()  # the run the link points at, not "latest"
    assert strict_json(files.json)["run_id"] == "20261123-020000-bbbb"
    # The link is no run; the second run is found by its history entry.
    assert earlier_runs(reports, first) == [reports / HISTORY_DIR / "20261123-020000-bbbb.json"]


def test_latest_refuses_to_replace_a_real_folder(tmp_path):
    (tmp_path / "latest").mkdir()

    with pytest.raises(HarnessError, match="not a symbolic link") as raised:
        update_latest(tmp_path, tmp_path / "run")
    assert raised.value.fix and "remove or rename" in raised.value.fix


def test_screenshot_without_chromium_says_how_to_get_it(tmp_path, monkeypatch):
    page = tmp_path / "index.html"
    page.write_text("<html></html>")
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(HarnessError, match="no headless Chromium found") as raised:
        screenshot(page, tmp_path / "index.png")
    assert "apt-get install chromium" in raised.value.fix


# ---------------------------------------------------------------- headless Chromium


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and RGB rows of an 8-bit RGB PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 2), "expected 8-bit RGB"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * 3
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 2:
            line = bytearray((x + b) & 0xFF for x, b in zip(line, previous, strict=True))
        elif kind in (1, 3, 4):
            for i in range(stride):
                a = line[i - 3] if i >= 3 else 0
                b, c = previous[i], previous[i - 3] if i >= 3 else 0
                if kind == 1:
                    predictor = a
                elif kind == 3:
                    predictor = (a + b) >> 1
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + predictor) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


def pixels_where(rows: list[bytes], test) -> int:
    return sum(test(row[i], row[i + 1], row[i + 2]) for row in rows for i in range(0, len(row), 3))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium (apt-get install chromium)")
def test_the_html_opens_in_headless_chromium_and_shows_the_charts(tmp_path):
    files = write_report(copy_run("valid-failed-hpa", tmp_path))
    # The same page without its charts: what the charts add is what shows them.
    bare = files.directory / "bare.html"
    bare.write_text(re.sub(r"<svg.*?</svg>", "", files.html.read_text(), flags=re.S))

    png = screenshot(files.html, files.directory / SCREENSHOT_FILE, height=2400, scale=0.5)
    without = screenshot(bare, tmp_path / "bare.png", height=2400, scale=0.5)

    width, height, rows = read_png(png)
    assert (width, height) == (640, 1200)
    _, _, bare_rows = read_png(without)
    # The chart's lines by their hue (a half-size picture blends thin lines with the white):
    # requests/s and p50 (blue), p95 (orange), Ready pods (green), the test's marks (purple).
    hues = {
        "blue": lambda r, g, b: b > r + 90 and b > g + 60,
        "orange": lambda r, g, b: r > g + 80 and g > b + 20,
        "green": lambda r, g, b: g > r + 50 and g > b + 40,
        "purple": lambda r, g, b: b > g + 60 and r > g + 30,
    }
    for name, hue in hues.items():
        added = pixels_where(rows, hue) - pixels_where(bare_rows, hue)
        assert added > 50, f"the charts show no {name} line"


def test_a_broken_promise_carries_its_finding_into_every_report(tmp_path):
    """The `why` a scenario recorded (what in the manifests broke the promise) reaches
    summary.md, results.json and the HTML, not only the test's failure message."""
    run_dir = copy_run("valid-failed-hpa", tmp_path)
    (result,) = run_dir.glob("*/result.json")
    record = json.loads(result.read_text())
    failed = next(v for v in record["verdicts"] if v["status"] == "fail")
    failed["why"] = "Deployment demo runs 1 replica: while its only pod is replaced, nothing serves"
    result.write_text(json.dumps(record))

    files = write_report(run_dir)

    assert "why: Deployment demo runs 1 replica" in files.markdown.read_text()
    (test,) = strict_json(files.json)["tests"]
    assert any(v["why"].startswith("Deployment demo runs 1") for v in test["verdicts"])
    assert "why: Deployment demo runs 1 replica" in files.html.read_text()


def test_the_reported_recovery_is_the_verdicts(tmp_path):
    """The report's time to recover and the self-healing verdict read recovery one way
    (`Timeline.disruption`): the same figure for the same run."""
    test = read_test(copy_run("valid-suite", tmp_path) / DELETED_POD)
    figures = resilience.figures(test)
    verdict = recovered(
        test.timeline,
        deployment="demo",
        replicas=2,
        fault_at=figures.disturbance_at,
        within_s=60,
        what="pod deleted",
    ).verdict
    assert verdict.passed and figures.time_to_recover_s == pytest.approx(verdict.measured, abs=0.01)


def test_a_rollout_between_versions_charts_each_versions_share_of_the_answers(tmp_path):
    canary = write_report(copy_run("valid-canary", tmp_path)).html.read_text()
    assert canary.count("Traffic share by version") == 1
    chart = canary[canary.index("Traffic share by version") :]
    assert ">v1<" in chart and ">v2<" in chart
    # Runs whose answers named one version (or none, recorded before versions were) have
    # no such chart.
    suite = write_report(copy_run("valid-suite", tmp_path)).html.read_text()
    assert "Traffic share by version" not in suite
