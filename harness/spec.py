"""The resilience spec: what a service promises, per service, validated before anything runs.

A YAML file (see scenarios/demo-service.spec.yaml) names each service's manifests, the load
to drive, its SLOs and the behaviour expected of it: HPA bounds and timings, recovery after
pods or containers die, probe reaction times, rollout error budget and duration. Every
problem in the file is reported at once, each with its place in the file and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.errors import InvalidConfiguration
from harness.gopackages import program_name
from harness.helm import HelmRelease, is_chart
from harness.images.oci import split_ref
from harness.load import SLO
from harness.load._locust_entry import VERSION_FROM
from harness.load.runner import HOST, PLACEMENTS
from harness.load.shapes import MAX_DURATION_S, MAX_USERS
from harness.render import check_source
from harness.user_files import read_yaml

API_VERSION = "kube-harness/v1"
KIND = "ResilienceSpec"
SCHEMA_ID = "urn:kube-harness:resilience-spec:v1"


class InvalidSpec(InvalidConfiguration):
    """The resilience spec has problems; the message lists every one with its location."""


Parse = Callable[[Any], Any]


def _schema(fragment: dict[str, Any]) -> Callable[[Parse], Parse]:
    """Attach the JSON Schema of what a parse function accepts; `spec_schema` reads it, so
    the published schema comes from the code that validates."""

    def mark(parse: Parse) -> Parse:
        parse.json_schema = fragment  # type: ignore[attr-defined]
        return parse

    return mark


# Larger values are typos or attacks, never a promise a test can wait out or a load a
# machine can send (MAX_USERS and MAX_DURATION_S are the load shapes' bounds).
MAX_LOAD_WORKERS = 100
MAX_COUNT = 1_000_000
DURATION_SCHEMA = {
    "type": ["number", "string"],
    "exclusiveMinimum": 0,
    "maximum": MAX_DURATION_S,
    "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m)?\s*$",
    "description": "a duration: 30s, 2m, 500ms, or a number of seconds",
}
FRACTION_SCHEMA = {
    "type": ["number", "string"],
    "minimum": 0,
    "maximum": 1,
    "pattern": r"^\s*\d+(\.\d+)?\s*%?\s*$",
    "description": "a share: 2% or 0.02",
}
TEXT_SCHEMA = {"type": "string", "minLength": 1}


@_schema(DURATION_SCHEMA)
def parse_seconds(raw: Any) -> float:
    """`90`, `90s`, `1.5m`, `500ms` -> seconds."""
    if isinstance(raw, bool):
        raise ValueError("a duration, not a boolean")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", str(raw))
        if not found:
            raise ValueError(f"{raw!r} is not a duration like 30s, 2m or 500ms")
        value = float(found[1]) * {"ms": 0.001, "s": 1, "m": 60, None: 1}[found[2]]
    if not 0 < value <= MAX_DURATION_S:  # .nan fails this too
        raise ValueError(f"a duration must be over 0 and at most 24h, not {raw!r}")
    return value


@_schema(FRACTION_SCHEMA)
def parse_fraction(raw: Any) -> float:
    """`2%`, `0.02` -> 0.02."""
    text = str(raw).strip()
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"{raw!r} is not between 0% and 100%")
    return value


def _count(minimum: int, maximum: int = MAX_COUNT) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= maximum:
            raise ValueError(f"must be a whole number from {minimum} to {maximum}, not {raw!r}")
        return raw

    parse.json_schema = {"type": "integer", "minimum": minimum, "maximum": maximum}  # type: ignore[attr-defined]
    return parse


@_schema(TEXT_SCHEMA)
def _text(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"must be a non-empty string, not {raw!r}")
    return raw


@_schema({"type": "number", "exclusiveMinimum": 0})
def _positive(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < math.inf:
        raise ValueError(f"must be a finite number > 0, not {raw!r}")
    return float(raw)


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(rf"(?=.{{1,253}}$){DNS_LABEL.pattern}(\.{DNS_LABEL.pattern})*")


@_schema({"type": "string", "pattern": rf"^{DNS_LABEL.pattern}$"})
def _name(raw: Any) -> str:
    """A name that is also a folder and a container name: a DNS label (no `/`, no `.`)."""
    if not isinstance(raw, str) or not DNS_LABEL.fullmatch(raw):
        raise ValueError(
            f"must be a DNS label (lowercase letters, digits and '-', at most 63), not {raw!r}"
        )
    return raw


@_schema({"type": "string", "pattern": f"^{DNS_SUBDOMAIN.pattern}$"})
def _object_name(raw: Any) -> str:
    """A Kubernetes object name (Deployment, Secret, HPA): a DNS subdomain."""
    if not isinstance(raw, str) or not DNS_SUBDOMAIN.fullmatch(raw):
        raise ValueError(f"must be a Kubernetes object name (a DNS subdomain), not {raw!r}")
    return raw


GO_PACKAGE = re.compile(r"[a-z0-9.-]+\.[a-z]+(/[\w.~-]+)+")


@dataclass(frozen=True)
class GoProgramBuild:
    """`build: {go: ...}`: each image version is built from Go main packages at the module
    version its tag names (e.g. `...:v2.26.0`, or through `versions:`), as the cluster's
    components are.

    Attributes:
        programs: (path in the image, main package) pairs; the first is the entrypoint. A
            bare package is put at `/bin/<its name>`.
        user: UID:GID the image runs as (distroless's nonroot by default).
        workdir: the image's working directory (for commands like `./app`).
        versions: image tag -> module version, for services whose image tags are not
            their module's versions.
    """

    programs: tuple[tuple[str, str], ...]
    user: str = "65532:65532"
    workdir: str = "/"
    versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str:
        """The entrypoint's main package."""
        return self.programs[0][1]

    def module_version(self, tag: str) -> str:
        return self.versions.get(tag, tag)


# Image builders of the harness a spec may ask for (`build: demo`), run before deploying.
IMAGE_BUILDERS = ("demo",)
GO_BUILD_KEYS = ("go", "user", "workdir", "versions")
GO_BUILD_FORM = (
    "a Go build is `{go: MAIN_PACKAGE}` or `{go: {IMAGE_PATH: MAIN_PACKAGE, ...}}` "
    "(optionally `user: UID:GID`, `workdir: PATH`, `versions: {IMAGE_TAG: MODULE_VERSION}`)"
)


def _go_package(raw: Any) -> str:
    package = _text(raw)
    if "@" in package or not GO_PACKAGE.fullmatch(package):
        raise ValueError(
            f"{package!r} is not a Go package path like github.com/org/repo/cmd/app "
            "(the version comes from each image's tag)"
        )
    return package


def _image_path(raw: Any) -> str:
    path = _text(raw)
    if not path.startswith("/") or path.endswith("/") or ".." in path.split("/"):
        raise ValueError(f"{path!r} is not an absolute file path in the image, like /bin/app")
    return path


@_schema(
    {
        "oneOf": [
            {"enum": list(IMAGE_BUILDERS)},
            {
                "type": "object",
                "properties": {
                    "go": {
                        "oneOf": [
                            TEXT_SCHEMA,
                            {"type": "object", "additionalProperties": TEXT_SCHEMA,
                             "minProperties": 1},
                        ],
                        "description": "a main package, or image path -> main package (the "
                        "first is the entrypoint), as the service's Dockerfile lays them out",
                    },
                    "user": TEXT_SCHEMA,
                    "workdir": TEXT_SCHEMA,
                    "versions": {"type": "object", "additionalProperties": TEXT_SCHEMA},
                },
                "required": ["go"],
                "additionalProperties": False,
            },
        ],
        "description": "how the harness builds the images: `demo`, or {go: MAIN_PACKAGE}",
    }
)  # fmt: skip
def _builder(raw: Any) -> str | GoProgramBuild:
    if isinstance(raw, Mapping):
        unknown = sorted(set(raw) - set(GO_BUILD_KEYS))
        if unknown or "go" not in raw:
            raise ValueError(f"{GO_BUILD_FORM}, not {dict(raw)!r}")
        go = raw["go"]
        if isinstance(go, Mapping) and go:
            programs = tuple((_image_path(k), _go_package(v)) for k, v in go.items())
        else:
            package = _go_package(go)
            programs = ((f"/bin/{program_name(package)}", package),)
        versions = raw.get("versions", {})
        if not isinstance(versions, Mapping) or not all(
            re.fullmatch(r"v\d+\.\d+\.\d+\S*", str(v)) for v in versions.values()
        ):
            raise ValueError(
                "versions: must map image tags to module versions (vX.Y.Z or a pseudo-version), "
                f"not {versions!r}"
            )
        return GoProgramBuild(
            programs,
            user=_text(raw.get("user", "65532:65532")),
            workdir=_image_path(raw["workdir"]) if "workdir" in raw else "/",
            versions={str(k): str(v) for k, v in versions.items()},
        )
    if raw not in IMAGE_BUILDERS:
        raise ValueError(
            f"{raw!r} is not an image builder; known: {', '.join(IMAGE_BUILDERS)}, "
            "or {go: MAIN_PACKAGE}"
        )
    return raw


HPA_DRIVERS = ("load", "cpu-pressure")


@_schema({"enum": list(PLACEMENTS)})
def _load_placement(raw: Any) -> str:
    if raw not in PLACEMENTS:
        raise ValueError(f"{raw!r} is not where load can run; use one of: {', '.join(PLACEMENTS)}")
    return raw


@_schema({"enum": list(HPA_DRIVERS)})
def _hpa_driver(raw: Any) -> str:
    if raw not in HPA_DRIVERS:
        raise ValueError(f"{raw!r} is not a way to raise CPU; use one of: {', '.join(HPA_DRIVERS)}")
    return raw


@_schema(
    {
        "oneOf": [
            {"type": "integer", "minimum": 1, "maximum": 65535},
            {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$"},
        ],
        "description": "the Service (or container) port that takes the load: number or name",
    }
)
def _port(raw: Any) -> str | int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if not 1 <= raw <= 65535:
            raise ValueError(f"a port number is 1-65535, not {raw}")
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?", raw):
        return raw
    raise ValueError(f"must be a port number or a port name like `http`, not {raw!r}")


@_schema(
    {
        "oneOf": [
            {"type": "object", "properties": {"header": TEXT_SCHEMA}, "required": ["header"],
             "additionalProperties": False},
            {"type": "object", "properties": {"json": TEXT_SCHEMA}, "required": ["json"],
             "additionalProperties": False},
        ],
        "description": "where a response names the version that answered it: a response "
        "header, or a field of a JSON body (`build.version` goes into nested objects)",
    }
)  # fmt: skip
def _version_from(raw: Any) -> str:
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((kind, name),) = raw.items()
        if kind in ("header", "json") and isinstance(name, str) and name.strip():
            return f"{kind}:{name.strip()}"
    raise ValueError(
        f"must be {{header: NAME}} or {{json: FIELD}}, not {raw!r} (e.g. {{header: X-App-Version}})"
    )


# A label key: an optional DNS-subdomain prefix and a name of up to 63 characters.
LABEL_KEY = re.compile(
    rf"({DNS_LABEL.pattern}(\.{DNS_LABEL.pattern})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?"
)


@_schema({"type": "string", "pattern": rf"^{LABEL_KEY.pattern}$"})
def _label_key(raw: Any) -> str:
    if not isinstance(raw, str) or not LABEL_KEY.fullmatch(raw):
        raise ValueError(f"must be a label key like `slot` or `example.com/slot`, not {raw!r}")
    return raw


@_schema({"type": "object", "additionalProperties": TEXT_SCHEMA})
def _answered_versions(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) and v for v in raw.values()):
        raise ValueError(
            "must map image version names to the version their answers name, "
            f"e.g. {{current: '1.4.0', next: '1.5.0'}}, not {raw!r}"
        )
    return {str(k): v for k, v in raw.items()}


@_schema({"type": "array", "minItems": 1, "items": FRACTION_SCHEMA})
def _canary_steps(raw: Any) -> tuple[float, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"must be a list of the canary's shares, e.g. [25%, 50%], not {raw!r}")
    steps = tuple(parse_fraction(step) for step in raw)
    if not all(0 < step < 1 for step in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(
            f"must be rising shares between 0% and 100% (100% is the promotion), not {raw!r}"
        )
    return steps


@_schema(
    {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
)
def _port_numbers(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"must be a list of port numbers, e.g. [8080], not {raw!r}")
    port = _count(1, 65535)
    return tuple(sorted({port(item) for item in raw}))


@_schema({"type": "boolean"})
def _boolean(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"must be true or false, not {raw!r}")
    return raw


@_schema({"type": "string", "pattern": "^/"})
def _url_path(raw: Any) -> str:
    if not _text(raw).startswith("/"):
        raise ValueError(f"must be a URL path starting with '/', not {raw!r}")
    return raw


class _Reader:
    """Reads one mapping of the spec, collecting every problem instead of stopping at one."""

    def __init__(self, data: Any, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        # A mapping that is something else is one problem, not one per key it lacks.
        self.is_mapping = isinstance(data, Mapping)
        if not self.is_mapping:
            problems.append(f"{where}: must be a mapping, not {type(data).__name__}")
            data = {}
        self.data = dict(data)
        self.known: set[str] = set()

    def get(self, key: str, parse: Callable[[Any], Any], default: Any = ...) -> Any:
        self.known.add(key)
        place = f"{self.where}.{key}"
        if key not in self.data:
            if default is ... and self.is_mapping:
                self.problems.append(f"{place}: required")
            return None if default is ... else default
        try:
            return parse(self.data[key])
        except (ValueError, TypeError, InvalidConfiguration) as exc:
            message = exc.message if isinstance(exc, InvalidConfiguration) else str(exc)
            # An SLO's own errors name the place already (it is their `source`).
            self.problems.append(message if message.startswith(place) else f"{place}: {message}")
            return None

    def section(
        self, key: str, *, required: bool = True, about: str | None = None
    ) -> _Reader | None:
        """The mapping under `key` (`about` describes it in the published schema)."""
        self.known.add(key)
        if key not in self.data:
            if required and self.is_mapping:
                self.problems.append(f"{self.where}.{key}: required")
            return None
        return _Reader(self.data[key], f"{self.where}.{key}", self.problems)

    def done(self) -> None:
        for key in sorted(set(self.data) - self.known):
            close = difflib.get_close_matches(str(key), sorted(self.known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            self.problems.append(f"{self.where}.{key}: unknown key{hint}")


class _SchemaRecorder(_Reader):
    """Goes through the same reading code as `_Reader`, recording each key's JSON Schema
    (from its parse function) instead of reading a value: see `spec_schema`."""

    def __init__(self, where: str, about: str | None = None) -> None:
        super().__init__({}, where, [])
        self.about = about
        self.properties: dict[str, Any] = {}
        self.required: list[str] = []
        self.sections: dict[str, _SchemaRecorder] = {}

    def get(self, key: str, parse: Callable[[Any], Any], default: Any = ...) -> Any:
        self.properties[key] = dict(parse.json_schema)  # type: ignore[attr-defined]
        if default is ...:
            self.required.append(key)
        return None

    def section(self, key: str, *, required: bool = True, about: str | None = None) -> _Reader:
        child = self.sections[key] = _SchemaRecorder(f"{self.where}.{key}", about)
        self.properties[key] = {}
        if required:
            self.required.append(key)
        return child

    def schema(self) -> dict[str, Any]:
        properties = {
            key: self.sections[key].schema() if key in self.sections else fragment
            for key, fragment in self.properties.items()
        }
        schema: dict[str, Any] = {"type": "object"}
        if self.about:
            schema["description"] = inspect.cleandoc(self.about).replace("\n", " ")
        schema.update(properties=properties, additionalProperties=False)
        if self.required:
            schema["required"] = self.required
        return schema


@dataclass(frozen=True)
class HpaExpectation:
    """Under CPU load: from min to at least `scale_up_to` within `scale_up_within_s`; never
    above max; back to min within `scale_down_within_s` once load stops; at most
    `max_direction_changes` reversals."""

    name: str
    min: int
    max: int
    scale_up_to: int
    scale_up_within_s: float
    scale_down_within_s: float
    max_direction_changes: int = 2
    # How CPU rises: `load` sends the CPU load (load.cpu_path); `cpu-pressure` burns CPU in
    # the pods' cgroups (harness.chaos.cpu_hog) while the steady load measures availability,
    # for services without a CPU-heavy path.
    driver: str = "load"


@dataclass(frozen=True)
class SelfHealingExpectation:
    """A deleted pod, a killed container or a crashed process is Ready again in time, and the
    error rate over the `window_s` after the fault stays within `max_error_rate`."""

    ready_within_s: float
    max_error_rate: float
    window_s: float = 20.0


@dataclass(frozen=True)
class NodeFailureExpectation:
    """When a worker node fails, its pods are Ready on other nodes within
    `ready_elsewhere_within_s`, and the error rate over the `window_s` after the failure
    stays within `max_error_rate` (requests to the lost pods fail until the node is found
    unreachable and they leave the endpoints)."""

    ready_elsewhere_within_s: float
    max_error_rate: float
    window_s: float = 60.0


@dataclass(frozen=True)
class ProbeExpectation:
    """A pod whose readiness fails leaves the endpoints in time; a failing liveness probe
    restarts its container in time; a start-up slowed by `startup_delay_s` (when given) is
    protected by the startup probe."""

    readiness_leaves_endpoints_within_s: float
    liveness_restarts_within_s: float
    startup_delay_s: float | None = None


# Who may reach a service's ports, as its NetworkPolicies should say.
NETWORK_SOURCES = ("any-namespace", "same-namespace")


@dataclass(frozen=True)
class NetworkPolicyExpectation:
    """What the service's NetworkPolicies let through, proven from probe pods on a cluster
    that enforces them (the harness installs kube-router's firewall on local and kind):
    other pods reach `ingress_ports` of the service's pods, from `ingress_from`
    (`any-namespace` or `same-namespace`), and no other port; with `dns` (the default),
    pods of its namespace resolve its Service's name, and with `dns: false` they must not."""

    ingress_ports: tuple[int, ...]
    ingress_from: str = "any-namespace"
    dns: bool = True

    def admits(self, *, same_namespace: bool, port: int) -> bool:
        """Whether a pod (of the service's namespace or not) may reach `port`."""
        return port in self.ingress_ports and (
            same_namespace or self.ingress_from == "any-namespace"
        )


@dataclass(frozen=True)
class ServiceDiscoveryExpectation:
    """A pod of the service's namespace finds it by its Service's DNS name throughout a
    rollout to `images.next` (when the spec has one) and the deletion of one of its pods:
    at most `max_failed_lookups` lookups of the name go unanswered or get NXDOMAIN, and at
    most `max_failed_requests` requests to the address they give fail."""

    max_failed_lookups: int = 0
    max_failed_requests: int = 0


ROLLOUT_STRATEGIES = ("rolling", "blue-green", "canary")
# Who carries a blue-green or canary release out: the harness with plain objects, or the
# manifests' Argo Rollout (harness.argo_rollouts).
ROLLOUT_CONTROLLERS = ("native", "argo-rollouts")
# The pod label each strategy moves traffic by, unless the spec names another.
STRATEGY_LABELS = {"rolling": "", "blue-green": "slot", "canary": "track"}


def _one_of(choices: tuple[str, ...], what: str) -> Parse:
    """The parse function of a value that is one of `choices` (a `what`)."""

    @_schema({"enum": list(choices)})
    def parse(raw: Any) -> str:
        if raw not in choices:
            raise ValueError(
                f"{raw!r} is not a {what} the harness knows; use one of: " + ", ".join(choices)
            )
        return raw

    return parse


_rollout_strategy = _one_of(ROLLOUT_STRATEGIES, "rollout strategy")
_rollout_controller = _one_of(ROLLOUT_CONTROLLERS, "rollout controller")
_network_source = _one_of(NETWORK_SOURCES, "source of connections")


@dataclass(frozen=True)
class RolloutExpectation:
    """How the service moves from `images.current` to `images.next` under steady load, and
    what that may cost: at most `max_failed_requests` failed requests.

    `strategy: rolling` (the default), the Deployment's own RollingUpdate: the new version
    is out within `complete_within`, and a broken image is reported stuck within
    `stuck_detected_within`.

    `strategy: blue-green`: the running Deployment is blue, its pods labelled
    `label: blue` (default label `slot`) and selected so by the Services. Green, a copy of
    it with the next image and `label: green`, is Ready within `complete_within`; the
    Services move to green and back to blue, and from `grace` after each switch (requests
    on connections opened before it may still reach the old slot) every answer comes from
    the slot switched to.

    `strategy: canary`: the running Deployment is stable, its pods labelled
    `label: stable` (default label `track`) in its selector and pod template, and the
    Services select its pods without that label. A canary, its copy with the next image and
    `label: canary`, gets each share of the pods in `steps` (e.g. [25%, 50%]) in turn,
    Ready within `complete_within`, for `step_for` each; the share of the answers it gives
    stays within `tolerance` (points) of the step's share. A canary whose answers break the
    SLO's error rate at a step is aborted (scaled to 0; from `grace` after its pods are gone,
    the stable version must answer alone); else the stable Deployment is rolled out to the
    next image and the canary removed.

    `controller: argo-rollouts` (with strategy blue-green or canary): the manifests hold an
    Argo Rollout that runs the Deployment (`workloadRef`) and carries the release out, and
    the harness installs the controller (local and kind). A canary's steps are the
    Rollout's own (setWeight, pause, analysis; `steps` and `step_for` are not used): at
    each weight the canary's share of the answers stays within `tolerance`, an indefinite
    pause is promoted by the harness, and the Rollout is Healthy on the next version within
    `complete_within` of that (of the release, when no step waits for a promotion); a
    failing analysis aborts it, after which (from `grace`) the stable version answers
    alone. Blue-green: the preview is Ready within `complete_within` while the active
    Service keeps the current version, the harness smoke-tests it and promotes it once its
    analysis passed; from `grace` after the switch every answer comes from the next one.

    Which version answered is read from the responses (`load.version`) and compared with
    `versions` (default: each image's tag, e.g. `v2`).
    """

    complete_within_s: float
    max_failed_requests: int
    stuck_detected_within_s: float | None = None
    strategy: str = "rolling"
    label: str = ""
    grace_s: float = 2.0
    versions: Mapping[str, str] = field(default_factory=dict)
    steps: tuple[float, ...] = ()
    step_for_s: float = 20.0
    tolerance: float = 0.1
    controller: str = "native"


@dataclass(frozen=True)
class AdminHooks:
    """How to provoke failures in the service itself (optional; the demo service has them)."""

    token_secret: str
    token_key: str
    fail_readiness: str
    fail_liveness: str
    crash: str
    startup_delay_env: str | None = None  # environment variable that delays start-up


@dataclass(frozen=True)
class LoadSpec:
    """Steady load (`users` on `path`) and the CPU load that drives the HPA (`cpu_users` on
    `cpu_path`, by default the same); `rps` per user. `workers`: 0 sends it from one Locust
    process; N from Locust's distributed mode, a master and N workers (--load-workers wins).
    `placement`: `host` runs Locust on this machine, through a NodePort on 127.0.0.1;
    `cluster` runs it as pods beside the service, through its Service name
    (--load-placement wins).

    A request without an answer after `timeout_s` counts as failed, and its user goes on:
    a user stuck on a lost connection would stop sending while the outage lasts, and
    the outage would not show in the error rate.

    `version`: where each response names the version that answered it (`{header: NAME}` or
    `{json: FIELD}`; default the header X-App-Version), which the blue-green and canary
    scenarios count per second.
    """

    path: str
    users: int
    cpu_path: str
    cpu_users: int
    rps: float = 5.0
    timeout_s: float = 5.0
    workers: int = 0
    placement: str = HOST
    version_from: str = VERSION_FROM


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    manifests: Path
    deployment: str
    container: str
    images: Mapping[str, str]
    load: LoadSpec
    slo: SLO
    hpa: HpaExpectation | None
    self_healing: SelfHealingExpectation | None
    probes: ProbeExpectation | None
    rollout: RolloutExpectation | None
    node_failure: NodeFailureExpectation | None = None
    network_policy: NetworkPolicyExpectation | None = None
    service_discovery: ServiceDiscoveryExpectation | None = None
    admin: AdminHooks | None = None
    build: str | GoProgramBuild | None = None
    port: str | int | None = None  # the Service (or container) port that takes the load
    archives: tuple[Path, ...] = ()  # image archives loaded into the cluster before deploying
    helm: HelmRelease | None = None  # for a chart: release name, values, what upgrades go to

    @property
    def image_name(self) -> str:
        """The image the manifests name, i.e. `images.current` without its tag."""
        return split_ref(self.images["current"])[0]

    def image_override(self, version: str) -> dict[str, str]:
        """The `deploy(images=...)` mapping that runs image version `version`."""
        return {self.image_name: self.images[version]}

    def promises(self, promise: str) -> bool:
        """Whether the spec makes `promise`: a dotted path into it that is set (`hpa`,
        `slo.max_p95_ms`), with `=VALUE` one that has that value
        (`rollout.strategy=blue-green`)."""
        path, equals, wanted = promise.partition("=")
        value: Any = self
        for name in path.split("."):
            parts = (
                [f.name for f in dataclasses.fields(value)]
                if dataclasses.is_dataclass(value)
                else []
            )
            if name not in parts:
                raise InvalidConfiguration(
                    f"promise {promise!r}: a service's spec has no {name!r} there",
                    fix="name a path into a service's spec; the parts there: "
                    + (", ".join(parts) or "none (it is a value)"),
                )
            value = getattr(value, name)
            if value is None:
                return False
        return not equals or str(value) == wanted

    def answers_version(self, version: str) -> str:
        """What the answers of image version `version` (`current`, `next`) name as their
        version: `rollout.versions` says, else the image's tag."""
        named = self.rollout.versions if self.rollout else {}
        return _answered_version(version, self.images, named)


@dataclass(frozen=True)
class ResilienceSpec:
    path: Path
    services: tuple[ServiceSpec, ...] = field(default_factory=tuple)

    def service(self, name: str) -> ServiceSpec:
        for service in self.services:
            if service.name == name:
                return service
        raise InvalidSpec(
            f"{self.path}: no service named {name!r}",
            fix=f"use one of: {', '.join(s.name for s in self.services)}",
        )


@_schema(
    {
        "type": "object",
        "required": ["current"],
        "additionalProperties": TEXT_SCHEMA,
        "description": "version name -> image reference; `current` is deployed, `next` is "
        "what the rollout scenarios move to",
    }
)
def _images(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping) or "current" not in raw:
        raise ValueError("must map version names to image references and name `current`")
    return {str(k): _text(v) for k, v in raw.items()}


def _read_service(data: Any, where: str, base: Path, problems: list[str]) -> ServiceSpec | None:
    return _service_fields(_Reader(data, where, problems), base)


def _service_fields(r: _Reader, base: Path) -> ServiceSpec | None:
    problems = r.problems

    @_schema({**TEXT_SCHEMA, "description": "a kustomization, a Helm chart (folder or .tgz), "
              "a manifest file or a folder of them, relative to the spec"})  # fmt: skip
    def manifests(raw: Any) -> Path:
        return check_source(base / _text(raw))

    @_schema({"type": "array", "minItems": 1, "items": TEXT_SCHEMA})
    def archives(raw: Any) -> tuple[Path, ...]:
        if not isinstance(raw, list) or not raw:
            raise ValueError("must be a list of image archive paths (docker save, OCI layout)")
        paths = tuple((base / _text(item)).resolve() for item in raw)
        for path in paths:
            if not (path.is_file() or (path / "index.json").is_file()):
                raise ValueError(
                    f"{path} is neither an image archive file nor an OCI layout folder "
                    "(with index.json)"
                )
        return paths

    @_schema(SLO.json_schema())
    def slo(raw: Any) -> SLO:
        return SLO.from_mapping(raw, source=f"{r.where}.slo")

    service = dict(
        name=r.get("name", _name),
        manifests=r.get("manifests", manifests),
        deployment=r.get("deployment", _object_name),
        container=r.get("container", _name),
        images=r.get("images", _images),
        slo=r.get("slo", slo),
        build=r.get("build", _builder, None),
        port=r.get("port", _port, None),
        archives=r.get("archives", archives, ()),
    )
    if (load := r.section("load", about=LoadSpec.__doc__)) is not None:
        service["load"] = LoadSpec(
            path=load.get("path", _url_path),
            users=load.get("users", _count(1, MAX_USERS)),
            cpu_path=load.get("cpu_path", _url_path, None) or load.data.get("path"),
            cpu_users=load.get("cpu_users", _count(1, MAX_USERS), None) or load.data.get("users"),
            rps=load.get("rps", _positive, 5.0),
            timeout_s=load.get("timeout", parse_seconds, 5.0),
            workers=load.get("workers", _count(0, MAX_LOAD_WORKERS), 0),
            placement=load.get("placement", _load_placement, HOST),
            version_from=load.get("version", _version_from, VERSION_FROM),
        )
        load.done()
    if (helm := r.section("helm", required=False, about=HelmRelease.__doc__)) is not None:
        if service["manifests"] is not None and not is_chart(service["manifests"]):
            helm.problems.append(
                f"{helm.where}: {service['manifests']} is not a Helm chart (a folder with "
                "Chart.yaml, or a .tgz): drop `helm:` or point `manifests:` at the chart"
            )
        service["helm"] = _read_release(helm, service["manifests"], service["name"], base)
    elif service["manifests"] is not None and is_chart(service["manifests"]):
        service["helm"] = HelmRelease(name=service["name"] or "release", chart=service["manifests"])
    if (admin := r.section("admin", required=False, about=AdminHooks.__doc__)) is not None:
        service["admin"] = AdminHooks(
            token_secret=admin.get("token_secret", _object_name),
            token_key=admin.get("token_key", _text),
            fail_readiness=admin.get("fail_readiness", _url_path),
            fail_liveness=admin.get("fail_liveness", _url_path),
            crash=admin.get("crash", _url_path),
            startup_delay_env=admin.get("startup_delay_env", _text, None),
        )
        admin.done()
    expect = r.section(
        "expect", about="What the service promises: each section runs its scenarios."
    )
    service.update(_read_expectations(expect) if expect else {})
    if service.get("rollout") and service["images"]:
        problems += _rollout_image_problems(r.where, service["rollout"], service["images"])
    r.done()
    return ServiceSpec(**service) if not problems else None


def _answered_version(version: str, images: Mapping[str, str], named: Mapping[str, str]) -> str:
    """What the answers of image version `version` name as their version: `named` says
    (`rollout.versions`), else the image's tag."""
    return named.get(version) or split_ref(images[version])[1] or images[version]


def _rollout_image_problems(
    where: str, rollout: RolloutExpectation, images: Mapping[str, str]
) -> list[str]:
    """What the images contradict in a rollout: the version it moves to, the versions its
    answers name (which must tell the two apart where the scenarios count them)."""
    versions = rollout.versions or {}  # None when it could not be read: said already
    if "next" not in images:
        return [
            f"{where}.images.next: required by expect.rollout (the version a rollout moves "
            "to), e.g. next: example.org/web:v1.1.0"
        ]
    problems = [
        f"{where}.expect.rollout.versions.{name}: no image version {name!r} (images: "
        f"{', '.join(images)})"
        for name in versions
        if name not in images
    ]
    answered = {name: _answered_version(name, images, versions) for name in ("current", "next")}
    if rollout.strategy in ("blue-green", "canary") and answered["current"] == answered["next"]:
        problems.append(
            f"{where}.expect.rollout: current and next both answer as version "
            f"{answered['current']!r}, so no answer could tell the {rollout.strategy} "
            "release's two sides apart: name what each answers in rollout.versions"
        )
    return problems


def _read_release(
    helm: _Reader, chart: Path | None, service: str | None, base: Path
) -> HelmRelease | None:
    """`helm: {release, values, set, next: {chart, values, set}}`."""

    @_schema(TEXT_SCHEMA)
    def chart_path(raw: Any) -> Path:
        path = (base / _text(raw)).resolve()
        if not is_chart(path):
            raise ValueError(f"{path} is not a Helm chart (a folder with Chart.yaml, or a .tgz)")
        return path

    @_schema({"type": "array", "items": TEXT_SCHEMA})
    def values(raw: Any) -> tuple[Path, ...]:
        if not isinstance(raw, list):
            raise ValueError("must be a list of values files")
        paths = tuple((base / _text(item)).resolve() for item in raw)
        for path in paths:
            if not path.is_file():
                raise ValueError(f"values file {path} does not exist")
        return paths

    @_schema({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
    def set_values(raw: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw, Mapping):
            raise ValueError("must map value paths to values, e.g. {replicaCount: 2}")
        return tuple((str(k), json.dumps(v) if isinstance(v, bool) else str(v))
                     for k, v in raw.items())  # fmt: skip

    name = helm.get("release", _text, None) or service or "release"
    given = dict(values=helm.get("values", values, ()), set=helm.get("set", set_values, ()))
    upgrade = None
    if (
        n := helm.section(
            "next", required=False, about="What `helm upgrade` moves to in the rollout scenarios."
        )
    ) is not None:
        upgrade = dict(
            chart=n.get("chart", chart_path, None) or chart,
            values=n.get("values", values, None),
            set=n.get("set", set_values, None),
        )
        n.done()
    helm.done()
    if chart is None:
        return None
    current = HelmRelease(name=name, chart=chart, **given)
    if upgrade is None:
        return current
    return replace(
        current,
        next=HelmRelease(
            name=name,
            chart=upgrade["chart"],
            values=current.values if upgrade["values"] is None else upgrade["values"],
            set=current.set if upgrade["set"] is None else upgrade["set"],
        ),
    )


def _read_expectations(expect: _Reader) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hpa": None,
        "self_healing": None,
        "probes": None,
        "rollout": None,
        "node_failure": None,
        "network_policy": None,
        "service_discovery": None,
    }
    if (h := expect.section("hpa", required=False, about=HpaExpectation.__doc__)) is not None:
        hpa = HpaExpectation(
            name=h.get("name", _object_name),
            min=h.get("min", _count(1)),
            max=h.get("max", _count(1)),
            scale_up_to=h.get("scale_up_to", _count(1)),
            scale_up_within_s=h.get("scale_up_within", parse_seconds),
            scale_down_within_s=h.get("scale_down_within", parse_seconds),
            max_direction_changes=h.get("max_direction_changes", _count(0), 2),
            driver=h.get("driver", _hpa_driver, "load"),
        )
        if None not in (hpa.min, hpa.max, hpa.scale_up_to) and not (
            hpa.min < hpa.scale_up_to <= hpa.max
        ):
            h.problems.append(
                f"{h.where}: need min < scale_up_to <= max, got {hpa.min} / {hpa.scale_up_to} / "
                f"{hpa.max}"
            )
        h.done()
        out["hpa"] = hpa
    if (
        s := expect.section("self_healing", required=False, about=SelfHealingExpectation.__doc__)
    ) is not None:
        out["self_healing"] = SelfHealingExpectation(
            ready_within_s=s.get("ready_within", parse_seconds),
            max_error_rate=s.get("max_error_rate", parse_fraction),
            window_s=s.get("window", parse_seconds, 20.0),
        )
        s.done()
    if (
        n := expect.section("node_failure", required=False, about=NodeFailureExpectation.__doc__)
    ) is not None:
        out["node_failure"] = NodeFailureExpectation(
            ready_elsewhere_within_s=n.get("ready_elsewhere_within", parse_seconds),
            max_error_rate=n.get("max_error_rate", parse_fraction),
            window_s=n.get("window", parse_seconds, 60.0),
        )
        n.done()
    if (
        w := expect.section(
            "network_policy", required=False, about=NetworkPolicyExpectation.__doc__
        )
    ) is not None:
        out["network_policy"] = NetworkPolicyExpectation(
            ingress_ports=w.get("ingress_ports", _port_numbers),
            ingress_from=w.get("ingress_from", _network_source, "any-namespace"),
            dns=w.get("dns", _boolean, True),
        )
        w.done()
    if (
        d := expect.section(
            "service_discovery", required=False, about=ServiceDiscoveryExpectation.__doc__
        )
    ) is not None:
        out["service_discovery"] = ServiceDiscoveryExpectation(
            max_failed_lookups=d.get("max_failed_lookups", _count(0), 0),
            max_failed_requests=d.get("max_failed_requests", _count(0), 0),
        )
        d.done()
    if (p := expect.section("probes", required=False, about=ProbeExpectation.__doc__)) is not None:
        out["probes"] = ProbeExpectation(
            readiness_leaves_endpoints_within_s=p.get(
                "readiness_leaves_endpoints_within", parse_seconds
            ),
            liveness_restarts_within_s=p.get("liveness_restarts_within", parse_seconds),
            startup_delay_s=p.get("startup_delay", parse_seconds, None),
        )
        p.done()
    if (
        o := expect.section("rollout", required=False, about=RolloutExpectation.__doc__)
    ) is not None:
        rollout = RolloutExpectation(
            complete_within_s=o.get("complete_within", parse_seconds),
            max_failed_requests=o.get("max_failed_requests", _count(0)),
            stuck_detected_within_s=o.get("stuck_detected_within", parse_seconds, None),
            strategy=o.get("strategy", _rollout_strategy, "rolling"),
            label=o.get("label", _label_key, ""),
            grace_s=o.get("grace", parse_seconds, 2.0),
            versions=o.get("versions", _answered_versions, {}),
            steps=o.get("steps", _canary_steps, ()),
            step_for_s=o.get("step_for", parse_seconds, 20.0),
            tolerance=o.get("tolerance", parse_fraction, 0.1),
            controller=o.get("controller", _rollout_controller, "native"),
        )
        if rollout.strategy in STRATEGY_LABELS:  # else named as not a strategy already
            rollout = replace(rollout, label=rollout.label or STRATEGY_LABELS[rollout.strategy])
        if rollout.strategy == "rolling" and rollout.stuck_detected_within_s is None:
            o.problems.append(
                f"{o.where}.stuck_detected_within: required for strategy rolling (how soon a "
                "broken image must be reported stuck), e.g. 60s"
            )
        if rollout.controller == "argo-rollouts" and rollout.strategy == "rolling":
            o.problems.append(
                f"{o.where}.controller: argo-rollouts carries out a blue-green or canary "
                "release; set strategy to the one the manifests' Rollout uses"
            )
        if (
            rollout.strategy == "canary"
            and rollout.controller == "native"
            and not rollout.steps
            and "steps" not in o.data
        ):
            o.problems.append(
                f"{o.where}.steps: required for strategy canary (the canary's share of the "
                "pods at each step), e.g. [25%, 50%]"
            )
        o.done()
        out["rollout"] = rollout
    expect.done()
    return out


def load_spec(path: Path) -> ResilienceSpec:
    """Read and validate a resilience spec file.

    Raises:
        InvalidSpec: listing every problem found, each with its place in the file.
    """
    try:
        data = read_yaml(
            path, "resilience spec", fix="pass --resilience-spec=PATH to an existing file"
        )
    except InvalidConfiguration as exc:
        raise InvalidSpec(exc.message, fix=exc.fix) from None
    problems: list[str] = []
    top = _Reader(data, "spec", problems)
    services = _top_fields(top)
    top.done()
    parsed = [
        _read_service(item, f"services[{i}]", path.parent, problems)
        for i, item in enumerate(services or [])
    ]
    names = [s.name for s in parsed if s]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        given = ", ".join(map(repr, twice))
        problems.append(f"services: names must be unique; given more than once: {given}")
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise InvalidSpec(
            f"resilience spec {path} has {len(problems)} problem(s):\n{listing}",
            fix="correct the fields listed above",
        )
    return ResilienceSpec(path, tuple(s for s in parsed if s))


@_schema({"const": API_VERSION})
def _api_version(raw: Any) -> str:
    if raw != API_VERSION:
        raise ValueError(f"must be {API_VERSION}")
    return raw


@_schema({"const": KIND})
def _kind(raw: Any) -> str:
    if raw != KIND:
        raise ValueError(f"must be {KIND}")
    return raw


@_schema({"type": "array", "minItems": 1})
def _services(raw: Any) -> list[Any]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("must be a non-empty list of services")
    return raw


def _top_fields(top: _Reader) -> list[Any] | None:
    top.get("apiVersion", _api_version)
    top.get("kind", _kind)
    return top.get("services", _services)


def spec_schema() -> dict[str, Any]:
    """The spec's format as a JSON Schema (draft 2020-12), recorded by running the code
    that reads specs: editors complete and check a spec with it (`harness schema`)."""
    top = _SchemaRecorder("spec", __doc__)
    _top_fields(top)
    service = _SchemaRecorder("services[]", "One service: its manifests, images, load, SLO "
                              "and the behaviour expected of it.")  # fmt: skip
    _service_fields(service, Path("."))
    top.properties["services"]["items"] = service.schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"kube-harness {KIND} ({API_VERSION})",
        **top.schema(),
    }
