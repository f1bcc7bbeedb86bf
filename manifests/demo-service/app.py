"""The demo service the harness tests: a small HTTP server with only the standard library.

Endpoints (every response carries `X-Pod-Name` and `X-App-Version`):
    GET  /                  fast answer
    GET  /work?ms=N         burns N ms of CPU (what drives the HPA)
    GET  /healthz           liveness: 503 while starting, 500 once made to fail
    GET  /readyz            readiness: 503 while starting, draining or made to fail
    GET  /version           the configured version and the serving pod
    GET  /stats             this pod's count of `/` and `/work` requests, of those answered 500,
                            and their error rate (0 before any): what a canary analysis reads
    POST /admin/fail-liveness            /healthz fails until the process restarts
    POST /admin/fail-readiness?seconds=N /readyz fails for N seconds (for good without N)
    POST /admin/recover                  undo both failures
    POST /admin/crash?code=N             exit at once with code N (default 1), no draining
Admin requests need `Authorization: Bearer <token>` with the token from ADMIN_TOKEN (a
Secret); a wrong or missing token, or no token configured, gets 403 and changes nothing.

Configuration is environment only, so one image serves every version:
    PORT (8080), DEMO_VERSION (dev), POD_NAME (hostname), ADMIN_TOKEN (unset: admin off),
    STARTUP_DELAY_S (0), DRAIN_DELAY_S (0), MAX_WORK_MS (10000), ERROR_RATE (0: the share
    of `/` and `/work` requests answered 500, evenly spread, as a broken release would;
    its probes still pass).

On SIGTERM readiness turns false at once, the server keeps answering for DRAIN_DELAY_S (while
endpoints drop the pod), then stops accepting, lets in-flight requests finish and exits 0.
Each request is its own connection (HTTP/1.0), so kube-proxy spreads requests, not sessions.
"""

from __future__ import annotations

import hmac
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The service's configuration, read from the environment."""

    port: int = 8080
    version: str = "dev"
    pod_name: str = "unknown"
    admin_token: str = ""
    startup_delay_s: float = 0.0
    drain_delay_s: float = 0.0
    max_work_ms: int = 10_000
    error_rate: float = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            port=int(environ.get("PORT", "8080")),
            version=environ.get("DEMO_VERSION", "dev"),
            pod_name=environ.get("POD_NAME") or socket.gethostname(),
            admin_token=environ.get("ADMIN_TOKEN", ""),
            startup_delay_s=float(environ.get("STARTUP_DELAY_S", "0")),
            drain_delay_s=float(environ.get("DRAIN_DELAY_S", "0")),
            max_work_ms=int(environ.get("MAX_WORK_MS", "10000")),
            error_rate=float(environ.get("ERROR_RATE", "0")),
        )


class Health:
    """Liveness and readiness state, changed by startup, admin requests and SIGTERM."""

    def __init__(self, startup_delay_s: float, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._started_at = clock() + startup_delay_s
        self._lock = threading.Lock()
        self.liveness_failed = False
        self._readiness_failed_until: float | None = None
        self.draining = False

    def starting(self) -> bool:
        return self._clock() < self._started_at

    def fail_liveness(self) -> None:
        self.liveness_failed = True

    def fail_readiness(self, seconds: float | None) -> None:
        with self._lock:
            self._readiness_failed_until = (
                float("inf") if seconds is None else self._clock() + seconds
            )

    def recover(self) -> None:
        with self._lock:
            self.liveness_failed = False
            self._readiness_failed_until = None

    def liveness(self) -> tuple[int, str]:
        if self.starting():
            return 503, "starting"
        if self.liveness_failed:
            return 500, "liveness failed on request"
        return 200, "alive"

    def readiness(self) -> tuple[int, str]:
        if self.draining:
            return 503, "draining"
        if self.starting():
            return 503, "starting"
        with self._lock:
            until = self._readiness_failed_until
        if until is not None and self._clock() < until:
            return 503, "readiness failed on request"
        return 200, "ready"


class Failures:
    """Which requests a version broken on purpose answers 500: `rate` of them, evenly spread
    (the n-th fails when n * rate crosses a whole number), so a test knows what to expect."""

    def __init__(self, rate: float) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"ERROR_RATE must be between 0 and 1, not {rate}")
        self.rate = rate
        self._count = 0
        self._failed = 0
        self._lock = threading.Lock()

    def next_fails(self) -> bool:
        with self._lock:
            self._count += 1
            n = self._count
            fails = int(n * self.rate) > int((n - 1) * self.rate)
            self._failed += fails
        return fails

    def stats(self) -> dict[str, float]:
        """The requests counted so far, those answered 500, and their share."""
        with self._lock:
            count, failed = self._count, self._failed
        return {"requests": count, "errors": failed, "error_rate": failed / count if count else 0.0}


def burn_cpu(ms: int) -> int:
    """Spin for `ms` milliseconds of CPU time; return the loop count (so it is not optimised)."""
    deadline = time.thread_time() + ms / 1000
    spins = 0
    while time.thread_time() < deadline:
        spins += 1
    return spins


class DemoService:
    """The server, its health state and its shutdown sequence.

    Args:
        settings: configuration.
        exit_process: called with the exit code by /admin/crash (tests pass a recorder).
        host: address to listen on.

    Example:
        >>> service = DemoService(Settings(port=0), exit_process=print)  # doctest: +SKIP
        >>> service.start(); service.shutdown()                        # doctest: +SKIP
    """

    def __init__(
        self,
        settings: Settings,
        *,
        exit_process: Callable[[int], None] = os._exit,
        host: str = "0.0.0.0",
    ) -> None:
        self.settings = settings
        self.health = Health(settings.startup_delay_s)
        self.failures = Failures(settings.error_rate)
        self.exit_process = exit_process
        self.server = ThreadingHTTPServer((host, settings.port), make_handler(self))
        # Not daemon threads: server_close() then waits for in-flight requests.
        self.server.daemon_threads = False
        self._serving: threading.Thread | None = None
        self.stopped = threading.Event()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def start(self) -> None:
        """Serve in a background thread."""
        # A short poll interval makes shutdown() return promptly.
        self._serving = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, name="serve"
        )
        self._serving.start()

    def shutdown(self) -> None:
        """Turn readiness false, keep serving for the drain delay, then finish in-flight work."""
        if self.health.draining:
            return
        self.health.draining = True
        time.sleep(self.settings.drain_delay_s)
        self.server.shutdown()  # stops accepting new connections
        self.server.server_close()  # joins the threads still answering requests
        if self._serving is not None:
            self._serving.join()
        self.stopped.set()

    def crash(self, code: int) -> None:
        """Exit at once, as a crashing process does (no draining)."""
        log(f"crash requested: exiting with code {code}")
        self.exit_process(code)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def make_handler(service: DemoService) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one service."""
    settings = service.settings
    health = service.health
    failures = service.failures

    class Handler(BaseHTTPRequestHandler):
        server_version = "demo-service"

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path in ("/", "/work") and failures.next_fails():
                self.reply(500, {"error": "this version fails on purpose (ERROR_RATE)"})
            elif url.path == "/":
                self.reply(200, {"message": "hello", "pod": settings.pod_name})
            elif url.path == "/work":
                self.work(query)
            elif url.path == "/healthz":
                self.reply(*status_body(health.liveness()))
            elif url.path == "/readyz":
                self.reply(*status_body(health.readiness()))
            elif url.path == "/version":
                self.reply(200, {"version": settings.version, "pod": settings.pod_name})
            elif url.path == "/stats":
                self.reply(200, failures.stats())
            elif url.path.startswith("/admin/"):
                self.reply(405, {"error": "admin endpoints take POST"})
            else:
                self.reply(404, {"error": f"no such path: {url.path}"})

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            actions: dict[str, Callable[[dict[str, list[str]]], Outcome]] = {
                "/admin/fail-liveness": self.fail_liveness,
                "/admin/fail-readiness": self.fail_readiness,
                "/admin/recover": self.recover,
                "/admin/crash": self.crash,
            }
            action = actions.get(url.path)
            if action is None:
                self.reply(404, {"error": f"no such admin action: {url.path}"})
                return
            if not self.authorised():
                self.reply(403, {"error": "a valid admin token is required"})
                return
            try:
                outcome = action(query)
            except ValueError as exc:
                self.reply(400, {"error": str(exc)})
                return
            self.reply(outcome.status, outcome.body)
            if outcome.then is not None:
                outcome.then()

        def authorised(self) -> bool:
            offered = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            expected = settings.admin_token
            return bool(expected) and hmac.compare_digest(offered.encode(), expected.encode())

        def work(self, query: dict[str, list[str]]) -> None:
            try:
                ms = int(query.get("ms", ["0"])[0])
            except ValueError:
                self.reply(400, {"error": "ms must be an integer number of milliseconds"})
                return
            if not 0 <= ms <= settings.max_work_ms:
                self.reply(400, {"error": f"ms must be between 0 and {settings.max_work_ms}"})
                return
            burn_cpu(ms)
            self.reply(200, {"worked_ms": ms, "pod": settings.pod_name})

        def fail_liveness(self, query: dict[str, list[str]]) -> Outcome:
            health.fail_liveness()
            log("admin: liveness now fails")
            return Outcome(200, {"liveness": "failing"})

        def fail_readiness(self, query: dict[str, list[str]]) -> Outcome:
            seconds = float(query["seconds"][0]) if "seconds" in query else None
            if seconds is not None and seconds <= 0:
                raise ValueError("seconds must be positive")
            health.fail_readiness(seconds)
            log(f"admin: readiness now fails for {seconds or 'ever'} s")
            return Outcome(200, {"readiness": "failing", "seconds": seconds})

        def recover(self, query: dict[str, list[str]]) -> Outcome:
            health.recover()
            log("admin: liveness and readiness restored")
            return Outcome(200, {"liveness": "ok", "readiness": "ok"})

        def crash(self, query: dict[str, list[str]]) -> Outcome:
            code = int(query.get("code", ["1"])[0])
            # Answer first, so the caller knows the crash was its doing.
            return Outcome(202, {"crashing": True, "code": code}, then=lambda: service.crash(code))

        def reply(self, status: int, body: dict[str, object]) -> None:
            payload = json.dumps(body).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Pod-Name", settings.pod_name)
            self.send_header("X-App-Version", settings.version)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # Probes and load would drown the log; only server errors are worth a line.
            if str(code).startswith("5"):
                super().log_request(code, size)

    return Handler


@dataclass(frozen=True)
class Outcome:
    """What an admin action answers, and what it does once the answer is sent."""

    status: int
    body: dict[str, object]
    then: Callable[[], None] | None = None


def status_body(status: tuple[int, str]) -> tuple[int, dict[str, object]]:
    code, state = status
    return code, {"status": state}


def main() -> None:
    settings = Settings.from_env()
    service = DemoService(settings)
    service.start()
    log(f"demo-service {settings.version} on :{service.port} as {settings.pod_name}")

    def on_sigterm(signum: int, frame: object) -> None:
        log("SIGTERM: draining")
        threading.Thread(target=service.shutdown, name="shutdown").start()

    signal.signal(signal.SIGTERM, on_sigterm)
    service.stopped.wait()
    log("stopped")


if __name__ == "__main__":
    main()
