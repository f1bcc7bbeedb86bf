"""`harness load run`: one bounded, headless load run from the command line, judged by an SLO."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from harness.errors import InvalidConfiguration
from harness.load._locust_entry import POD_HEADER, VERSION_FROM
from harness.load.runner import DEMO_LOCUSTFILE, LoadRun, run_load
from harness.load.shapes import parse_shape
from harness.load.slo import SLO, format_verdicts
from harness.progress import say
from harness.wait import Pending, wait_for

DEFAULT_SHAPE = "constant:users=10,seconds=30"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `load run` to the `harness` command's subparsers."""
    load = subparsers.add_parser("load", help="generate load with Locust (bounded, headless)")
    actions = load.add_subparsers(dest="action", required=True)
    text = "run Locust headless against a URL, print the result and SLO verdicts"
    run = actions.add_parser("run", help=text, description=text)
    run.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8080")
    run.add_argument(
        "--shape",
        default=DEFAULT_SHAPE,
        help="KIND:name=value,... with KIND constant (users, seconds, spawn_rate), ramp (users, "
        "ramp_time, hold), step (step_users, step_time, steps, spawn_rate) or spike (users, "
        "spike_users, spike_at, spike_time, seconds, spawn_rate); 'locustfile' uses the "
        f"locustfile's own shape (default {DEFAULT_SHAPE})",
    )
    run.add_argument(
        "--locustfile",
        type=Path,
        default=DEMO_LOCUSTFILE,
        help="Locust file (default: the demo service's loadtests/demo.py)",
    )
    run.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="hard bound in seconds (default: the shape's duration + 30)",
    )
    run.add_argument(
        "--slo",
        type=Path,
        default=None,
        help="YAML limits: error_rate, p95, p99, min_rps (exit 1 when missed)",
    )
    run.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="folder for Locust's CSV/HTML and the record (default reports/load-<time>)",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the locustfile (e.g. DEMO_USER_RPS=5); repeatable",
    )
    run.add_argument(
        "--pod-header",
        default=POD_HEADER,
        help=f"response header naming the serving pod (default {POD_HEADER})",
    )
    run.add_argument(
        "--version-from",
        default=VERSION_FROM,
        help="where a response names the version that answered: header:NAME or json:FIELD "
        f"(default {VERSION_FROM})",
    )
    run.add_argument(
        "--local-network",
        action="append",
        default=[],
        metavar="CIDR",
        help="a routed range that stays on this machine (e.g. the cluster's service range)",
    )
    run.set_defaults(func=cmd_load_run)


def cmd_load_run(args: argparse.Namespace) -> int:
    """Run the load, show its progress each second, print the result; 1 when the SLO fails."""
    slo = SLO.load(args.slo) if args.slo else None
    shape = None if args.shape == "locustfile" else parse_shape(args.shape)
    env = dict(_name_value(item) for item in args.env)
    report_dir = args.report_dir or Path("reports") / time.strftime("load-%Y%m%d-%H%M%S")
    with run_load(
        args.url,
        shape,
        report_dir=report_dir,
        locustfile=args.locustfile,
        time_limit=args.time_limit,
        env=env,
        pod_header=args.pod_header,
        version_from=args.version_from,
        local_networks=args.local_network,
    ) as run:
        _follow(run)
        result = run.result()
    print(result.summary())
    if slo is None:
        return 0
    verdicts = slo.evaluate(result)
    print(format_verdicts(verdicts))
    return 0 if all(v.passed for v in verdicts) else 1


def _follow(run: LoadRun) -> None:
    """Print each second of the series as it closes, until Locust ends."""
    shown = 0

    def progress() -> bool | Pending:
        nonlocal shown
        for point in run.series()[shown:]:
            say(
                f"load: {point.users} users, {point.requests} req/s, {point.failures} failed/s, "
                f"p95 {point.p95_ms or 0:.0f}ms"
            )
            shown += 1
        return True if not run.running else Pending(f"{shown}s of load so far")

    wait_for(
        progress,
        what="the load run to finish",
        timeout=run.deadline - time.time() + 30,
        interval=1.0,
    )


def _name_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise InvalidConfiguration(
            f"--env {item!r} is not NAME=VALUE", fix="e.g. --env DEMO_USER_RPS=5"
        )
    return name, value
