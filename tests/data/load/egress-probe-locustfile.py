"""A locustfile that also tries to open connections its load pod must not: to each
`host:port` of EGRESS_PROBES, once per user, recorded as a TCP "request" that failed or not."""

import os
import socket
import time

from locust import FastHttpUser, constant_throughput, task


class User(FastHttpUser):
    wait_time = constant_throughput(5)

    def on_start(self) -> None:
        for probe in filter(None, os.environ.get("EGRESS_PROBES", "").split(",")):
            host, port = probe.rsplit(":", 1)
            started = time.time()
            error = None
            try:
                socket.create_connection((host, int(port)), timeout=3).close()
            except OSError as exc:
                error = exc
            self.environment.events.request.fire(
                request_type="TCP",
                name=f"connect {probe}",
                response_time=(time.time() - started) * 1000,
                response_length=0,
                exception=error,
                context={},
            )

    @task
    def index(self) -> None:
        self.client.get("/")
