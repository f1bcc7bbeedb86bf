"""The local cluster's supervisor, run for real on short-lived processes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.local.supervisor import request
from harness.errors import CommandFailed
from harness.wait import Pending, wait_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A supervisor running `sleeper` (long) and `crasher` (exits at once) and `late`."""
    state, run_dir = tmp_path / "state", tmp_path / "run"
    state.mkdir()
    run_dir.mkdir()
    specs = [
        {"name": "sleeper", "argv": ["sleep", "300"]},
        {"name": "crasher", "argv": ["sh", "-c", "echo crashing; exit 3"]},
        {"name": "late", "argv": ["sleep", "300"], "wait_for": [str(tmp_path / "go")]},
    ]
    (state / "components.json").write_text(json.dumps(specs))
    with (tmp_path / "supervisor.out").open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.cluster.local", str(state), str(run_dir)],
            cwd=REPO,
            stdout=out,
        )
    socket_path = run_dir / "supervisor.sock"
    wait_for(lambda: socket_path.exists() or Pending("no socket"), what="supervisor", timeout=10)
    yield socket_path, tmp_path
    if process.poll() is None:
        process.terminate()
    process.wait(timeout=20)


def status(socket_path: Path) -> dict:
    return request(socket_path, "status")["components"]


def test_starts_components_and_restarts_one_that_exits(supervised) -> None:
    socket_path, tmp_path = supervised
    process_output = tmp_path / "supervisor.out"
    wait_for(
        lambda: status(socket_path)["crasher"]["restarts"] >= 2 or Pending("not restarted"),
        what="crasher restarted twice",
        timeout=15,
    )
    assert status(socket_path)["sleeper"]["running"]
    assert status(socket_path)["crasher"]["last_exit"] == 3
    log = (tmp_path / "state" / "logs" / "crasher.log").read_text()
    assert log.count("crashing") >= 2 and "exited 3; restarting in" in log
    own_log = process_output.read_text()
    assert "supervising sleeper, crasher, late" in own_log
    assert "crasher exited 3; restarting in" in own_log


def test_waits_for_files_before_starting_a_component(supervised) -> None:
    socket_path, tmp_path = supervised
    assert not status(socket_path)["late"]["running"]
    (tmp_path / "go").touch()
    wait_for(
        lambda: status(socket_path)["late"]["running"] or Pending("late not started"),
        what="late to start",
        timeout=5,
    )


def test_stop_keeps_a_component_stopped_until_started(supervised) -> None:
    socket_path, _ = supervised
    pid = status(socket_path)["sleeper"]["pid"]
    request(socket_path, "stop", "sleeper")
    assert not status(socket_path)["sleeper"]["running"]
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    request(socket_path, "start", "sleeper")
    assert status(socket_path)["sleeper"]["pid"] not in (None, pid)
    request(socket_path, "restart", "sleeper")
    assert status(socket_path)["sleeper"]["running"]


def test_unknown_component_and_shutdown(supervised) -> None:
    socket_path, _ = supervised
    with pytest.raises(CommandFailed, match="no component 'nope'"):
        request(socket_path, "stop", "nope")
    pids = [c["pid"] for c in status(socket_path).values() if c["pid"]]
    request(socket_path, "shutdown")
    wait_for(lambda: not socket_path.exists() or Pending("socket still there"),
             what="supervisor to exit", timeout=20)  # fmt: skip
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
    with pytest.raises(CommandFailed, match="does not answer"):
        request(socket_path, "status")
