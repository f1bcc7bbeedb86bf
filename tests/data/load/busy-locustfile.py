"""A locustfile whose users burn the generator's CPU: the run must be marked unreliable."""

import time

from locust import FastHttpUser, constant, task


class BusyUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def spin_then_request(self) -> None:
        deadline = time.perf_counter() + 0.2
        while time.perf_counter() < deadline:  # CPU work inside the generator itself
            pass
        self.client.get("/")
