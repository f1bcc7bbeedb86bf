"""A locustfile whose shape parameters break the shape's rules: Locust must stop, clearly."""

from locust import FastHttpUser, task

from loadtests.shapes import SpikeShape


class User(FastHttpUser):
    @task
    def index(self) -> None:
        self.client.get("/")


class Burst(SpikeShape):
    users = 5
    spike_users = 3  # not above the baseline
    spike_at = 1
    spike_time = 1
    seconds = 3
