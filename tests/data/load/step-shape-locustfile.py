"""A locustfile with its own shape from loadtests/shapes.py, parameterised by attributes."""

from locust import FastHttpUser, constant_throughput, task

from loadtests.shapes import StepShape


class User(FastHttpUser):
    wait_time = constant_throughput(5)

    @task
    def index(self) -> None:
        self.client.get("/")


class Steps(StepShape):
    step_users = 2
    step_time = 1.5
    steps = 3
