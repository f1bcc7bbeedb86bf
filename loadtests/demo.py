"""Locustfile for the demo service: mostly fast requests, some CPU work, a version check.

Endpoints of the demo service: `/` (fast), `/work?ms=N` (burns N ms of CPU), `/version`.
Every response names its pod and its version in headers (by default `X-Pod-Name` and
`X-App-Version`; see LoadRunner's pod_header/version_from); the harness's recorder counts them.

Environment (read once at start):
    DEMO_USER_RPS   requests per second per user (default 10; 0 = no pause, as fast as possible)
    DEMO_WORK_MS    CPU milliseconds asked of /work (default 20)

Run by the harness (`harness load run --url URL`) or by plain Locust:
    locust -f loadtests/demo.py --headless -u 10 -r 10 -t 30s --host http://127.0.0.1:8080
"""

import os

from locust import FastHttpUser, constant, constant_throughput, task

USER_RPS = float(os.environ.get("DEMO_USER_RPS", "10"))
WORK_MS = int(os.environ.get("DEMO_WORK_MS", "20"))


class DemoUser(FastHttpUser):
    """One client of the demo service."""

    wait_time = constant_throughput(USER_RPS) if USER_RPS > 0 else constant(0)

    @task(10)
    def fast(self) -> None:
        self.client.get("/", name="/")

    @task(2)
    def work(self) -> None:
        self.client.get(f"/work?ms={WORK_MS}", name="/work")

    @task(1)
    def version(self) -> None:
        self.client.get("/version", name="/version")
