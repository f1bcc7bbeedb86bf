"""SLO verdicts on hand-made results (pure logic)."""

from pathlib import Path

import pytest

from harness.errors import InvalidConfiguration
from harness.load.merge import generator_verdict
from harness.load.result import CpuSample, EndpointStats, Generator, LoadResult, WorkerLoad
from harness.load.slo import SLO, SLOViolation, format_verdicts

DATA = Path(__file__).parent / "data" / "load"


def stats(name, method, *, requests, failures, p95, p99, rps):
    return EndpointStats(
        method=method,
        name=name,
        requests=requests,
        failures=failures,
        avg_ms=50.0,
        min_ms=1.0,
        max_ms=900.0,
        p50_ms=40.0,
        p95_ms=p95,
        p99_ms=p99,
        rps=rps,
    )


def make_result(*, requests=1000, failures=10, p95=120.0, p99=300.0, rps=50.0, cpu=()):
    total = stats(
        "Aggregated", None, requests=requests, failures=failures, p95=p95, p99=p99, rps=rps
    )
    work = stats("/work", "GET", requests=100, failures=0, p95=700.0, p99=950.0, rps=5.0)
    samples = tuple(CpuSample(100.0 + i, p) for i, p in enumerate(cpu))
    generator = Generator("host", (WorkerLoad("local", requests, samples),))
    return LoadResult(
        base_url="http://127.0.0.1:1",
        started=100.0,
        ended=120.0,
        total=total,
        endpoints=[work],
        series=[],
        failures=[],
        pods={},
        versions={},
        generator=generator,
        unreliable_reason=generator_verdict(generator, since=100.0, locust_warned=False),
        report_dir=Path("."),
    )


def test_every_limit_passes_with_its_measured_value():
    verdicts = SLO(max_error_rate=0.02, max_p95_ms=200, max_p99_ms=500, min_rps=40).evaluate(
        make_result()
    )
    assert [(v.name, v.measured, v.limit, v.status) for v in verdicts] == [
        ("error rate", 0.01, 0.02, "pass"),
        ("p95 latency", 120.0, 200, "pass"),
        ("p99 latency", 300.0, 500, "pass"),
        ("throughput", 50.0, 40, "pass"),
    ]


@pytest.mark.parametrize(
    ("slo", "failing"),
    [
        (SLO(max_error_rate=0.005), "error rate: 1.00% (limit 0.50%): fail"),
        (SLO(max_p95_ms=100), "p95 latency: 120ms (limit 100ms): fail"),
        (SLO(max_p99_ms=299), "p99 latency: 300ms (limit 299ms): fail"),
        (SLO(min_rps=60), "throughput: 50.0 req/s (limit 60.0 req/s): fail"),
    ],
)
def test_each_limit_fails_where_it_should(slo, failing):
    result = make_result()
    with pytest.raises(SLOViolation) as caught:
        slo.check(result)
    assert failing in str(caught.value)
    assert "load against http://127.0.0.1:1" in str(caught.value)


def test_endpoint_limits_judge_that_endpoint():
    slo = SLO(max_p95_ms=200, endpoints={"/work": SLO(max_p95_ms=500, max_error_rate=0)})
    verdicts = slo.evaluate(make_result())
    assert [(v.name, v.measured, v.status) for v in verdicts] == [
        ("p95 latency", 120.0, "pass"),
        ("GET /work error rate", 0.0, "pass"),
        ("GET /work p95 latency", 700.0, "fail"),
    ]


def test_an_endpoint_without_requests_fails_its_limits():
    verdicts = SLO(endpoints={"POST /orders": SLO(max_p99_ms=100)}).evaluate(make_result())
    assert [str(v) for v in verdicts] == [
        "POST /orders p99 latency: nothing measured (limit 100ms): fail - no request completed"
    ]


def test_limits_are_inclusive():
    assert SLO(max_error_rate=0.01, max_p95_ms=120, min_rps=50).check(make_result())


def test_no_requests_fails_every_limit():
    verdicts = SLO(max_error_rate=0.5, min_rps=1).evaluate(make_result(requests=0, failures=0))
    assert [(v.status, v.measured, v.note) for v in verdicts] == [
        ("fail", None, "no request completed"),
        ("fail", None, "no request completed"),
    ]


def test_a_saturated_generator_makes_misses_inconclusive_not_failures():
    result = make_result(p95=900.0, cpu=[50, 95, 97, 99, 60])
    assert not result.reliable
    verdicts = SLO(max_error_rate=0.05, max_p95_ms=200).evaluate(result)
    text = format_verdicts(verdicts)
    assert [v.status for v in verdicts] == ["pass", "inconclusive", "inconclusive"]
    assert "load generator busy: 99% (limit 90%): inconclusive" in text
    assert "describe the generator, not the service" in text
    with pytest.raises(SLOViolation):
        SLO(max_p95_ms=200).check(result)


def test_valid_files():
    assert SLO.load(DATA / "valid-slo.yaml") == SLO(
        max_error_rate=0.01,
        max_p95_ms=250,
        max_p99_ms=1500,
        min_rps=20,
        endpoints={"/work": SLO(max_p95_ms=800), "POST /orders": SLO(max_error_rate=0)},
    )
    assert SLO.load(DATA / "valid-slo-endpoints-only.yaml") == SLO(
        endpoints={"/work": SLO(max_p99_ms=2000)}
    )
    assert SLO.load(DATA / "valid-slo-numbers.yaml") == SLO(max_error_rate=0.01, max_p95_ms=250)


@pytest.mark.parametrize("path", sorted(DATA.glob("invalid-slo-*.yaml")), ids=lambda p: p.name)
def test_invalid_files_say_what_is_wrong(path):
    expected = path.read_text().splitlines()[0].removeprefix("# error: ")
    with pytest.raises(InvalidConfiguration) as caught:
        SLO.load(path)
    assert expected in str(caught.value)
    assert caught.value.fix


def test_missing_file():
    with pytest.raises(InvalidConfiguration, match=r"SLO file .*no-such\.yaml does not exist"):
        SLO.load(DATA / "no-such.yaml")
