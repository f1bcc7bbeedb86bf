"""Where the built-in suite lives: scenarios, chaos experiments, locustfiles, the demo service.

In a checkout (and an editable install) these are the repository's top-level `scenarios/`,
`loadtests/` and `manifests/`. A built wheel carries the same folders under `harness/_suite/`
(pyproject.toml maps them there), so the demo spec's relative paths hold in both, and the
suite's modules import as `harness._suite.scenarios.test_*`: never confused with a user's own
`scenarios/` or `tests/`.

Example:
    >>> from harness import suite
    >>> suite.SCENARIOS.name, suite.DEMO_SPEC.name
    ('scenarios', 'demo-service.spec.yaml')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InvalidConfiguration

_PACKAGED = Path(__file__).resolve().parent / "_suite"
_CHECKOUT = Path(__file__).resolve().parents[1]

INSTALLED = (_PACKAGED / "scenarios").is_dir()
"""True when the suite comes from an installed wheel, False in a checkout."""
ROOT = _PACKAGED if INSTALLED else _CHECKOUT
SCENARIOS = ROOT / "scenarios"
EXPERIMENTS = SCENARIOS / "experiments"
DEMO_SPEC = SCENARIOS / "demo-service.spec.yaml"
LOADTESTS = ROOT / "loadtests"
PATHS_LOCUSTFILE = LOADTESTS / "paths.py"
DEMO_LOCUSTFILE = LOADTESTS / "demo.py"
MANIFESTS = ROOT / "manifests"
DEMO_APP = MANIFESTS / "demo-service" / "app.py"

# pytest markers by area: the built-in scenario modules each get one, experiments `chaos`.
MARKERS = {
    "hpa": "HPA scaling under CPU load (built-in suite)",
    "self_healing": "deleted pods, killed containers, crashed processes (built-in suite)",
    "probes": "readiness, liveness and startup probes (built-in suite)",
    "rollout": "rolling update and rollback, blue-green, canary, Argo Rollouts (built-in suite)",
    "capacity": "step load: capacity and HPA reaction (built-in suite)",
    "node_failure": "a stopped worker node (built-in suite)",
    "network_policy": "NetworkPolicies enforced and as promised, from probe pods (built-in suite)",
    "service_discovery": "the service found by its DNS name through a rollout and a pod deletion "
    "(built-in suite)",
    "chaos": "a chaos experiment file collected as a test item",
}
AREAS = {
    "test_hpa_scaling": "hpa",
    "test_self_healing": "self_healing",
    "test_probes": "probes",
    "test_zero_downtime_rollout": "rollout",
    "test_blue_green": "rollout",
    "test_canary": "rollout",
    "test_argo_rollouts": "rollout",
    "test_capacity": "capacity",
    "test_node_failure": "node_failure",
    "test_network_policy": "network_policy",
    "test_service_discovery": "service_discovery",
}


def require() -> Path:
    """The built-in scenarios folder.

    Raises:
        InvalidConfiguration: it is missing (a wheel built without the pyproject's mapping).
    """
    if not SCENARIOS.is_dir():
        raise InvalidConfiguration(
            f"the built-in scenario suite is missing (looked in {_PACKAGED / 'scenarios'} "
            f"and {_CHECKOUT / 'scenarios'})",
            fix="reinstall kube-harness from PyPI, a git URL or a wheel built from its "
            "pyproject.toml, or pass --no-builtin-suite",
        )
    return SCENARIOS


@dataclass(frozen=True)
class Collection:
    """What pytest collects so that the built-in suite is in it, once."""

    args: list[str]
    """pytest's paths (its `config.args`), the suite's added where needed."""
    through: frozenset[Path] = frozenset()
    """Folders between a path given and an installed suite below it (a virtualenv inside the
    repository): pytest, which skips virtualenvs, walks through them to the suite."""

    def ignore(self, path: Path) -> bool | None:
        """The answer to pytest_ignore_collect: False on the way to the suite, True for
        anything else in those folders (other packages' tests), None elsewhere."""
        if path in self.through or path == SCENARIOS:
            return False
        return True if path.parent in self.through else None


def collection(
    args: Sequence[str], invocation_dir: Path, *, only: bool = False, explicit: bool = True
) -> Collection | None:
    """pytest's paths with the built-in scenarios in them; None when they are in already.

    Args:
        args: the paths pytest collects (its `config.args`).
        invocation_dir: where pytest was started (relative `args` start there).
        only: collect the built-in suite alone.
        explicit: `args` were given on the command line (not testpaths or the current folder).

    Raises:
        InvalidConfiguration: `only` with paths given outside the suite; the suite is missing.
    """
    paths = [(invocation_dir / arg.split("::")[0]).resolve() for arg in args]
    if only:
        if explicit and all(path.is_relative_to(SCENARIOS) for path in paths):
            return None  # a part of the suite, named
        if explicit:
            raise InvalidConfiguration(
                f"--builtin-suite-only collects the built-in suite alone, not {' '.join(args)}",
                fix="drop those paths, or the option",
            )
        return Collection([str(require())])
    if any(path.is_relative_to(SCENARIOS) for path in paths):
        return None
    above = [path for path in paths if SCENARIOS.is_relative_to(path)]
    if above and not INSTALLED:
        return None  # a checkout's folder: pytest walks into its scenarios/
    if above:
        # pytest drops a path inside another one given, then skips the virtualenv on its
        # walk: lead the walk instead.
        through = frozenset(
            folder
            for path in above
            for folder in SCENARIOS.parents
            if folder != path and folder.is_relative_to(path)
        )
        return Collection(list(args), through)
    return Collection([*args, str(require())])


def contains(path: Path) -> bool:
    """Whether `path` is the built-in scenarios folder or inside it."""
    return path.resolve().is_relative_to(SCENARIOS)


def area(path: Path) -> str | None:
    """The area marker of a built-in scenario module (None for anything else)."""
    return AREAS.get(path.stem) if contains(path) and path.suffix == ".py" else None
