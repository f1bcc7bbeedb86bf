"""The Makefile's targets: every recipe line is valid shell (a quote in a pytest selection
once broke `make test` before it ran anything)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
@pytest.mark.parametrize("target", ["run", "unit", "test", "test-all", "test-kind"])
def test_every_recipe_line_is_valid_shell(target: str) -> None:
    planned = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True
    ).stdout
    script = "\n".join(line for line in planned.splitlines() if not line.startswith("make"))
    checked = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert checked.returncode == 0, f"{checked.stderr}\n{script}"
