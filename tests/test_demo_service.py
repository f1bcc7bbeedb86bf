"""The demo service's endpoints, admin protection and shutdown, in-process and as a process."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from harness.wait import Pending, wait_for

APP_PATH = Path(__file__).resolve().parents[1] / "manifests" / "demo-service" / "app.py"
TOKEN = "s3cret-token"


def load_app() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_app", APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["demo_app"] = module
    spec.loader.exec_module(module)
    return module


app = load_app()


def call(
    port: int, path: str, *, method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], dict[str, object]]:
    """One request on its own connection; returns status, headers and the JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def in_background(port: int, path: str) -> tuple[threading.Thread, list[int]]:
    """Start a request in a thread; the list receives its status code."""
    statuses: list[int] = []
    worker = threading.Thread(target=lambda: statuses.append(call(port, path)[0]))
    worker.start()
    return worker, statuses


class ExitRecorder:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


@pytest.fixture
def exits() -> ExitRecorder:
    return ExitRecorder()


def started(exits: ExitRecorder, **settings: object) -> app.DemoService:
    defaults: dict[str, object] = {
        "port": 0,
        "version": "v7",
        "pod_name": "demo-abc",
        "admin_token": TOKEN,
    }
    service = app.DemoService(
        app.Settings(**(defaults | settings)), exit_process=exits, host="127.0.0.1"
    )
    service.start()
    return service


@pytest.fixture
def service(exits: ExitRecorder) -> Iterator[app.DemoService]:
    service = started(exits)
    yield service
    service.shutdown()


def test_root_answers_with_pod_and_version_headers(service: app.DemoService) -> None:
    status, headers, body = call(service.port, "/")
    assert status == 200
    assert headers["X-Pod-Name"] == "demo-abc"
    assert headers["X-App-Version"] == "v7"
    assert body["pod"] == "demo-abc"


def test_version_comes_from_configuration(service: app.DemoService) -> None:
    status, _, body = call(service.port, "/version")
    assert (status, body) == (200, {"version": "v7", "pod": "demo-abc"})


def test_every_response_names_the_pod_even_errors(service: app.DemoService) -> None:
    status, headers, _ = call(service.port, "/nope")
    assert status == 404
    assert headers["X-Pod-Name"] == "demo-abc"


def test_a_version_broken_on_purpose_fails_its_share_evenly_while_its_probes_pass(
    exits: ExitRecorder,
) -> None:
    service = started(exits, error_rate=0.5)
    try:
        statuses = [call(service.port, path)[0] for path in ("/", "/work?ms=1") * 3]
        assert statuses == [200, 500] * 3
        status, headers, _ = call(service.port, "/work?ms=1")
        assert headers["X-App-Version"] == "v7" and status == 200
        assert [call(service.port, p)[0] for p in ("/healthz", "/readyz", "/version")] == [200] * 3
        assert "on purpose" in str(call(service.port, "/")[2]["error"])
    finally:
        service.shutdown()


def test_stats_count_the_requests_and_the_errors_a_broken_version_gave(
    exits: ExitRecorder,
) -> None:
    service = started(exits, error_rate=0.5)
    try:
        assert call(service.port, "/stats")[2] == {"requests": 0, "errors": 0, "error_rate": 0.0}
        for path in ("/", "/work?ms=1", "/", "/healthz", "/version"):
            call(service.port, path)
        assert call(service.port, "/stats")[2] == {"requests": 3, "errors": 1, "error_rate": 1 / 3}
    finally:
        service.shutdown()


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_an_error_rate_outside_0_to_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="ERROR_RATE must be between 0 and 1"):
        app.Failures(rate)


def test_work_burns_the_cpu_time_asked_for(service: app.DemoService) -> None:
    before = time.monotonic()
    status, _, body = call(service.port, "/work?ms=120")
    assert status == 200
    assert body["worked_ms"] == 120
    assert time.monotonic() - before >= 0.12


@pytest.mark.parametrize("query", ["ms=abc", "ms=-1", "ms=10001"])
def test_work_rejects_bad_durations(service: app.DemoService, query: str) -> None:
    status, _, body = call(service.port, f"/work?{query}")
    assert status == 400
    assert "ms must" in str(body["error"])


def test_probes_pass_once_started(service: app.DemoService) -> None:
    assert call(service.port, "/healthz")[0] == 200
    assert call(service.port, "/readyz")[0] == 200


def test_startup_delay_fails_both_probes_until_it_passes() -> None:
    now = [100.0]
    health = app.Health(startup_delay_s=5, clock=lambda: now[0])
    assert health.liveness() == (503, "starting")
    assert health.readiness() == (503, "starting")
    now[0] = 105.0
    assert health.liveness() == (200, "alive")
    assert health.readiness() == (200, "ready")


def test_startup_delay_applies_to_the_running_server(exits: ExitRecorder) -> None:
    service = started(exits, startup_delay_s=30)
    try:
        assert call(service.port, "/readyz")[:1] == (503,)
        assert call(service.port, "/healthz")[2] == {"status": "starting"}
        assert call(service.port, "/")[0] == 200
    finally:
        service.shutdown()


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x"])
@pytest.mark.parametrize("action", ["fail-liveness", "fail-readiness", "recover", "crash"], ids=str)
def test_admin_without_the_right_token_is_refused_and_changes_nothing(
    service: app.DemoService, exits: ExitRecorder, token: str | None, action: str
) -> None:
    status, _, body = call(service.port, f"/admin/{action}", method="POST", token=token)
    assert status == 403
    assert "token" in str(body["error"])
    assert call(service.port, "/healthz")[0] == 200
    assert call(service.port, "/readyz")[0] == 200
    assert exits.codes == []


def test_admin_is_off_when_no_token_is_configured(exits: ExitRecorder) -> None:
    service = started(exits, admin_token="")
    try:
        assert call(service.port, "/admin/crash", method="POST", token="")[0] == 403
        assert exits.codes == []
    finally:
        service.shutdown()


def test_fail_liveness_until_recovered(service: app.DemoService) -> None:
    assert call(service.port, "/admin/fail-liveness", method="POST", token=TOKEN)[0] == 200
    assert call(service.port, "/healthz")[:1] == (500,)
    assert call(service.port, "/readyz")[0] == 200
    assert call(service.port, "/admin/recover", method="POST", token=TOKEN)[0] == 200
    assert call(service.port, "/healthz")[0] == 200


def test_fail_readiness_for_good_until_recovered(service: app.DemoService) -> None:
    status, _, body = call(service.port, "/admin/fail-readiness", method="POST", token=TOKEN)
    assert (status, body) == (200, {"readiness": "failing", "seconds": None})
    assert call(service.port, "/readyz")[2] == {"status": "readiness failed on request"}
    assert call(service.port, "/healthz")[0] == 200
    call(service.port, "/admin/recover", method="POST", token=TOKEN)
    assert call(service.port, "/readyz")[0] == 200


def test_fail_readiness_for_some_seconds_recovers_by_itself() -> None:
    now = [0.0]
    health = app.Health(startup_delay_s=0, clock=lambda: now[0])
    health.fail_readiness(10)
    now[0] = 9.9
    assert health.readiness()[0] == 503
    now[0] = 10.0
    assert health.readiness()[0] == 200


def test_fail_readiness_rejects_a_non_positive_duration(service: app.DemoService) -> None:
    path = "/admin/fail-readiness?seconds=0"
    assert call(service.port, path, method="POST", token=TOKEN)[0] == 400
    assert call(service.port, "/readyz")[0] == 200


def test_crash_answers_then_exits_with_the_code(
    service: app.DemoService, exits: ExitRecorder
) -> None:
    status, _, body = call(service.port, "/admin/crash?code=3", method="POST", token=TOKEN)
    assert (status, body) == (202, {"crashing": True, "code": 3})
    # The answer goes out before the exit, so the exit may lag the answer a little.
    assert wait_for(lambda: exits.codes or Pending("no exit yet"), what="the exit", timeout=5) == [
        3
    ]


def test_admin_actions_need_post(service: app.DemoService, exits: ExitRecorder) -> None:
    assert call(service.port, "/admin/crash")[0] == 405
    assert exits.codes == []


def test_shutdown_turns_readiness_false_and_finishes_in_flight_requests(
    exits: ExitRecorder,
) -> None:
    service = started(exits, drain_delay_s=0.5)
    in_flight: list[int] = []
    worker = threading.Thread(
        target=lambda: in_flight.append(call(service.port, "/work?ms=800")[0])
    )
    worker.start()
    time.sleep(0.1)  # let the request reach the server before the shutdown starts
    stopper = threading.Thread(target=service.shutdown)
    stopper.start()
    wait_for(lambda: service.health.draining or Pending("not draining"), what="draining")
    assert call(service.port, "/readyz")[2] == {"status": "draining"}
    assert call(service.port, "/healthz")[0] == 200
    stopper.join(timeout=10)
    worker.join(timeout=10)
    assert in_flight == [200]
    assert service.stopped.is_set()
    with pytest.raises(ConnectionRefusedError):
        call(service.port, "/")


def test_settings_from_environment() -> None:
    settings = app.Settings.from_env(
        {
            "PORT": "9000",
            "DEMO_VERSION": "v2",
            "POD_NAME": "demo-1",
            "ADMIN_TOKEN": "t",
            "STARTUP_DELAY_S": "1.5",
            "DRAIN_DELAY_S": "2",
            "MAX_WORK_MS": "500",
            "ERROR_RATE": "0.25",
        }
    )
    assert settings == app.Settings(
        port=9000,
        version="v2",
        pod_name="demo-1",
        admin_token="t",
        startup_delay_s=1.5,
        drain_delay_s=2.0,
        max_work_ms=500,
        error_rate=0.25,
    )


class Process:
    """The app run as its own process, the way the container runs it."""

    def __init__(self, **env: str) -> None:
        environ = os.environ | {"PORT": "0", "ADMIN_TOKEN": TOKEN, "DEMO_VERSION": "v1"} | env
        self.popen = subprocess.Popen(
            [sys.executable, str(APP_PATH)], env=environ, stderr=subprocess.PIPE, text=True
        )
        assert self.popen.stderr is not None
        first_line = self.popen.stderr.readline()  # "... on :PORT as POD"
        self.port = int(first_line.split(" on :")[1].split()[0])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        assert self.popen.stderr is not None
        self.popen.stderr.close()


@pytest.fixture
def process() -> Iterator[Process]:
    running = Process(DRAIN_DELAY_S="0.5", POD_NAME="demo-proc")
    yield running
    running.stop()


def test_sigterm_drains_then_exits_zero(process: Process) -> None:
    assert call(process.port, "/readyz")[0] == 200
    in_flight: list[int] = []
    worker = threading.Thread(
        target=lambda: in_flight.append(call(process.port, "/work?ms=700")[0])
    )
    worker.start()
    time.sleep(0.1)  # the request is being served when SIGTERM arrives
    process.popen.send_signal(signal.SIGTERM)
    wait_for(
        lambda: call(process.port, "/readyz")[0] == 503 or Pending("still ready"),
        what="readiness to turn false after SIGTERM",
        timeout=5,
        interval=0.05,
    )
    assert process.popen.wait(timeout=10) == 0
    worker.join(timeout=10)
    assert in_flight == [200]


def test_crash_endpoint_ends_the_process_with_its_code(process: Process) -> None:
    status, headers, _ = call(process.port, "/admin/crash?code=3", method="POST", token=TOKEN)
    assert (status, headers["X-Pod-Name"]) == (202, "demo-proc")
    assert process.popen.wait(timeout=10) == 3


# --- the image: built offline for the local provider, and the Dockerfile for Docker users ---


@pytest.mark.builds
def test_demo_images_hold_the_app_and_their_version() -> None:
    from harness.images.demo import APP_SOURCE, DEMO_USER, build_demo_images, demo_image_ref
    from harness.images.oci import archive_ref

    versions = ["v1", "v2", "v2-broken"]
    archives = build_demo_images(versions)  # cached after the first build
    for version, archive in zip(versions, archives, strict=True):
        assert archive_ref(archive) == demo_image_ref(version)
        with tarfile.open(archive) as image:
            [manifest] = json.load(image.extractfile("manifest.json"))  # type: ignore[arg-type]
            config = json.load(image.extractfile(manifest["Config"]))  # type: ignore[arg-type]
            with tarfile.open(fileobj=image.extractfile(manifest["Layers"][-1])) as app_layer:
                shipped = app_layer.extractfile("app/app.py").read()  # type: ignore[union-attr]
        assert f"DEMO_VERSION={version}" in config["config"]["Env"]
        broken = "ERROR_RATE=0.5" in config["config"]["Env"]
        assert broken == version.endswith("-broken")
        assert config["config"]["User"] == DEMO_USER
        assert shipped == APP_SOURCE.read_bytes()


def test_demo_images_refuse_a_bad_version() -> None:
    from harness.errors import InvalidConfiguration
    from harness.images.demo import build_demo_images

    with pytest.raises(InvalidConfiguration, match="not a valid image tag"):
        build_demo_images(["v1", "v2:latest"])


def test_dockerfile_builds_the_same_image_as_the_offline_build() -> None:
    from harness.images.demo import DEMO_USER, ENTRYPOINT

    dockerfile = (APP_PATH.parent / "Dockerfile").read_text()
    assert f"ENTRYPOINT {json.dumps(list(ENTRYPOINT))}" in dockerfile
    assert f"USER {DEMO_USER}" in dockerfile
    assert "COPY app.py /app/app.py" in dockerfile
    assert "DEMO_VERSION=$VERSION" in dockerfile
    assert "ERROR_RATE=$ERROR_RATE" in dockerfile
