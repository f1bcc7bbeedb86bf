"""A locustfile with its own shape that never ends: only the harness's time limit stops it."""

from locust import FastHttpUser, LoadTestShape, constant_throughput, task


class User(FastHttpUser):
    wait_time = constant_throughput(5)

    @task
    def index(self) -> None:
        self.client.get("/")


class Forever(LoadTestShape):
    def tick(self) -> tuple[int, float]:
        return 2, 10.0
