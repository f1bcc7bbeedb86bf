"""A locustfile that cannot be imported: the harness must say so clearly."""

import no_such_module_for_harness_tests  # noqa: F401
from locust import FastHttpUser, task


class User(FastHttpUser):
    @task
    def index(self) -> None:
        self.client.get("/")
