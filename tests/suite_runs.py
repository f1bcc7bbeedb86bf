"""Running the built-in scenario suite against a spec in a pytest of its own, on the run's
cluster, and reading each item's outcome: what the example services' and the rollout
strategies' end-to-end tests share."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.paths import HOME_CACHE_DIR
from harness.plugin import TURN_HELD_ENV

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"


def outcomes(junit_xml: Path) -> dict[str, tuple[str, str]]:
    """Test name (without its parameter) -> (outcome, message) from pytest's JUnit XML."""
    found = {}
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        name = case.get("name", "").split("[")[0]
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = f"{element.get('message', '')}\n{element.text or ''}"
        found[name] = (outcome, message)
    return found


def spec_variant(spec: Path, into: Path, *changes: tuple[str, str]) -> Path:
    """A copy of `spec` in folder `into` with each (old, new) text change made; every old
    text must be there, so a changed spec breaks the variant loudly."""
    text = spec.read_text()
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path = into / f"variant-{spec.name}"
    path.write_text(text)
    return path


def broken_next_variant(directory: Path) -> Path:
    """The demo's spec whose progressive releases' (blue-green, canary, Argo Rollouts) next
    version answers half its requests 500 (the demo service's own rollout keeps v2)."""
    text = (SCENARIOS / "demo-service.spec.yaml").read_text()
    demo, rest = text.split("  - name: demo-blue-green", 1)
    variant = directory / "broken-next.spec.yaml"
    variant.write_text(
        demo.replace("../manifests/", f"{ROOT / 'manifests'}/")
        + "  - name: demo-blue-green"
        + rest.replace("../manifests/", f"{ROOT / 'manifests'}/").replace(
            "demo-service:v2\n", "demo-service:v2-broken\n"
        )
    )
    return variant


# A whole suite with every experiment takes up to 26 minutes here (podinfo: two to four
# replicas through every scenario); a part of one, a few.
WHOLE_SUITE_TIMEOUT_S = 45 * 60
PART_TIMEOUT_S = 25 * 60


def run_example(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    cluster,
    kept_in: Path,
    spec: Path,
    *scenarios: str,
):
    """The built-in `scenarios` against `spec` on the run's cluster, in a pytest of its own;
    each item's outcome and message. Its report is kept in `kept_in` (pytester's folders
    are removed a few runs later; the summary is what a reader pastes)."""
    # pytester gives the inner run a home of its own: it would build every cluster binary
    # again into an empty cache, and look for the running cluster in the wrong place.
    monkeypatch.setenv("HOME", str(HOME_CACHE_DIR.parents[1]))
    # This test holds the cluster's turn for the inner run (alone, for a whole suite).
    monkeypatch.setenv(TURN_HELD_ENV, cluster.options.name)
    junit = pytester.path / "junit.xml"
    run_id = f"example-{spec.stem.split('.')[0]}"
    result = pytester.runpytest_subprocess(
        f"--cluster-provider={cluster.name}",
        f"--cluster-name={cluster.options.name}",
        "--keep-cluster",
        f"--resilience-spec={spec}",
        f"--run-id={run_id}",
        f"--junitxml={junit}",
        "-p",
        "no:randomly",
        *(str(SCENARIOS / name) for name in scenarios),
        timeout=WHOLE_SUITE_TIMEOUT_S if scenarios == (".",) else PART_TIMEOUT_S,
    )
    report = pytester.path / "reports" / run_id
    if report.is_dir():
        shutil.copytree(report, kept_in / "report", dirs_exist_ok=True)
    found = outcomes(junit) if junit.is_file() else {}
    assert found, result.stdout.str()[-3000:]
    return found
