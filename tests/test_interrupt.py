"""SIGTERM taken as Ctrl-C: `finally` blocks and fixture teardowns run (where faults are
reverted), in a plain process and in a pytest run."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness.interrupt import terminate_as_interrupt

SLEEPER = """
import time
from harness.interrupt import terminate_as_interrupt
terminate_as_interrupt()
try:
    print("READY", flush=True)
    time.sleep(60)
finally:
    print("CLEANED UP", flush=True)
"""


def terminate_when_ready(command: list[str], cwd: Path, ready: str) -> tuple[int, str]:
    """Start `command`, wait for `ready` in its output, SIGTERM it; its exit code and output."""
    with subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if ready in line or not line:
                break
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    return process.returncode, "".join(lines) + rest


def test_sigterm_runs_finally_blocks(tmp_path):
    code, output = terminate_when_ready([sys.executable, "-c", SLEEPER], tmp_path, "READY")
    assert "CLEANED UP" in output
    assert code == 1 and "Terminated: stopped by SIGTERM" in output


def test_a_handler_someone_installed_is_kept():
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        undo = terminate_as_interrupt()
        assert signal.getsignal(signal.SIGTERM) is mine
        undo()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_pytest_run_stopped_by_sigterm_tears_its_fixtures_down(tmp_path):
    (tmp_path / "test_stopped.py").write_text(
        textwrap.dedent(
            """
            import time
            import pytest

            @pytest.fixture
            def fault():
                yield
                print("FAULT REVERTED", flush=True)

            def test_long(fault):
                print("INJECTED", flush=True)
                time.sleep(60)
            """
        )
    )
    code, output = terminate_when_ready(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "test_stopped.py"],
        tmp_path,
        "INJECTED",
    )
    assert "FAULT REVERTED" in output
    assert code == 2, output  # pytest's "interrupted"


def test_a_second_sigterm_does_not_cut_the_teardown_the_first_started(tmp_path):
    script = """
import os, signal, time
from harness.interrupt import terminate_as_interrupt
terminate_as_interrupt()
try:
    print("READY", flush=True)
    time.sleep(60)
finally:
    os.kill(os.getpid(), signal.SIGTERM)  # as a parent passing it on would
    time.sleep(0.2)
    print("CLEANED UP", flush=True)
"""
    code, output = terminate_when_ready([sys.executable, "-c", script], tmp_path, "READY")
    assert "CLEANED UP" in output and code == 1
