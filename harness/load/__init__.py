"""Load generation with Locust, run headless in its own process, judged by SLOs.

    with run_load("http://127.0.0.1:8080", Ramp(users=20, ramp_time=10, hold=20),
                  report_dir=path) as run:
        roll_out_new_version()          # run.series() shows the load meanwhile
    result = run.result()               # totals, per endpoint, series, failures, pods
    SLO(max_error_rate=0.01, max_p95_ms=250).check(result)

Nothing here imports Locust: it runs in a child process (see `runner`).
"""

from harness.load.result import EndpointStats, FailedRequest, LoadResult, SeriesPoint
from harness.load.runner import (
    DEMO_LOCUSTFILE,
    Load,
    LoadRun,
    LoadRunFailed,
    LoadRunner,
    TargetUnreachable,
    run_load,
)
from harness.load.shapes import Constant, Ramp, Shape, Spike, Step, parse_shape, shape_from_spec
from harness.load.slo import SLO, SLOViolation, Verdict, format_verdicts

__all__ = [
    "DEMO_LOCUSTFILE",
    "SLO",
    "Constant",
    "EndpointStats",
    "FailedRequest",
    "Load",
    "LoadResult",
    "LoadRun",
    "LoadRunFailed",
    "LoadRunner",
    "Ramp",
    "SLOViolation",
    "SeriesPoint",
    "Shape",
    "Spike",
    "Step",
    "TargetUnreachable",
    "Verdict",
    "format_verdicts",
    "parse_shape",
    "run_load",
    "shape_from_spec",
]
