"""SIGTERM taken as Ctrl-C: `finally` blocks and fixture teardowns run (where faults are
reverted), in a plain process and in a pytest run."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.interrupt import terminate_as_interrupt


def sleeper(before_cleaning_up: str = "") -> list[str]:
    """A Python process that sleeps under `terminate_as_interrupt` until SIGTERM comes."""
    script = f"""
import os, signal, time
from harness.interrupt import terminate_as_interrupt
terminate_as_interrupt()
try:
    print("READY", flush=True)
    time.sleep(60)
finally:
    {before_cleaning_up}
    print("CLEANED UP", flush=True)
"""
    return [sys.executable, "-c", script]


def write_suite(folder: Path, source: str) -> str:
    """A test file for a pytest run in `folder` that the test stops; its name."""
    (folder / "test_stopped.py").write_text(textwrap.dedent(source))
    return "test_stopped.py"


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
    code, output = terminate_when_ready(sleeper(), tmp_path, "READY")
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


@pytest.mark.slow
def test_a_pytest_run_stopped_by_sigterm_tears_its_fixtures_down(tmp_path):
    suite = write_suite(
        tmp_path,
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
        """,
    )
    code, output = terminate_when_ready(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", suite],
        tmp_path,
        "INJECTED",
    )
    assert "FAULT REVERTED" in output
    assert code == 2, output  # pytest's "interrupted"


def test_a_second_sigterm_does_not_cut_the_teardown_the_first_started(tmp_path):
    # A parent passing SIGTERM on sends a second one during the teardown.
    again = "os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)"
    code, output = terminate_when_ready(sleeper(again), tmp_path, "READY")
    assert "CLEANED UP" in output and code == 1


@pytest.mark.slow
def test_xdist_workers_finish_their_teardown_when_the_controller_gets_sigterm(tmp_path):
    """xdist ends its workers within seconds of the controller's own interruption: the
    controller passes SIGTERM on instead, so a teardown that takes a while (a revert that
    waits for a kubelet) finishes in every worker."""
    suite = write_suite(
        tmp_path,
        f"""
        import os, time
        import pytest

        @pytest.fixture
        def fault():
            yield
            time.sleep(7)
            open({str(tmp_path)!r} + f"/reverted-{{os.getpid()}}", "w").close()

        @pytest.mark.parametrize("n", [1, 2, 3, 4])
        def test_long(fault, n):
            open({str(tmp_path)!r} + f"/injected-{{os.getpid()}}", "w").close()
            time.sleep(60)
        """,
    )
    with subprocess.Popen(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", suite],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as run:  # fmt: skip
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("injected-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)  # the controller only, as `kill PID` does
        output, _ = run.communicate(timeout=90)
    assert len(list(tmp_path.glob("reverted-*"))) == 2, output
    assert run.returncode == 2, output  # interrupted, and no more tests started
    assert len(list(tmp_path.glob("injected-*"))) == 2, output
