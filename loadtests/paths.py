"""Locustfile for any HTTP service: every user requests one path at a steady rate.

The scenario suite uses it with the paths a resilience spec names (`load.path` for steady
load, `load.cpu_path` for the load that drives the HPA).

Environment (read once at start):
    LOAD_PATH       the path to request, with its query (default /)
    LOAD_USER_RPS   requests per second per user (default 5; 0 = no pause)
    LOAD_TIMEOUT_S  seconds after which an unanswered request fails (default 5)
    LOAD_NEW_CONNECTIONS  1: every request on a connection of its own (`Connection: close`),
                    as a new client's would be: where kube-proxy sends new connections is
                    what a Service switch or a canary's share changes (default 0: kept open)
"""

import os

from locust import FastHttpUser, constant, constant_throughput, task

PATH = os.environ.get("LOAD_PATH", "/")
USER_RPS = float(os.environ.get("LOAD_USER_RPS", "5"))
TIMEOUT_S = float(os.environ.get("LOAD_TIMEOUT_S", "5"))
HEADERS = {"Connection": "close"} if os.environ.get("LOAD_NEW_CONNECTIONS") == "1" else {}


class PathUser(FastHttpUser):
    """Requests PATH; the request name drops the query so stats group by endpoint."""

    wait_time = constant_throughput(USER_RPS) if USER_RPS > 0 else constant(0)
    # Locust's default is 60 s: a user stuck on a lost connection would hide an outage.
    connection_timeout = TIMEOUT_S
    network_timeout = TIMEOUT_S

    @task
    def request(self) -> None:
        self.client.get(PATH, name=PATH.split("?", 1)[0], headers=HEADERS)
