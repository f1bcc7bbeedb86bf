import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.draft import write_draft
from harness.errors import InvalidConfiguration
from harness.spec import (
    GoProgramBuild,
    InvalidSpec,
    load_spec,
    parse_fraction,
    parse_seconds,
    spec_schema,
)

ROOT = Path(__file__).parent.parent
DATA = Path(__file__).parent / "data" / "spec"


def test_the_demo_spec_is_valid_and_matches_the_manifests():
    spec = load_spec(ROOT / "scenarios" / "demo-service.spec.yaml")
    demo, blue_green, canary, argo_canary, argo_blue_green = spec.services
    assert demo.manifests == (ROOT / "manifests" / "overlays" / "ci").resolve()
    assert blue_green.manifests == (ROOT / "manifests" / "overlays" / "blue-green").resolve()
    assert (blue_green.rollout.strategy, blue_green.rollout.label) == ("blue-green", "slot")
    assert (canary.rollout.strategy, canary.rollout.label) == ("canary", "track")
    assert canary.rollout.steps == (0.33, 0.5)
    assert (canary.rollout.controller, argo_canary.rollout.controller) == (
        "native",
        "argo-rollouts",
    )
    assert (argo_canary.rollout.strategy, argo_blue_green.rollout.strategy) == (
        "canary",
        "blue-green",
    )
    assert (
        argo_blue_green.manifests == (ROOT / "manifests" / "overlays" / "argo-blue-green").resolve()
    )
    assert (demo.hpa.min, demo.hpa.max) == (2, 5)
    assert demo.rollout.max_failed_requests == 0
    assert demo.slo.max_error_rate == 0
    assert spec.service("demo") is demo


def test_every_problem_is_reported_at_once_with_its_place():
    with pytest.raises(InvalidSpec) as caught:
        load_spec(DATA / "invalid-many-problems.yaml")
    text = str(caught.value)
    for expected in (
        "services[0].manifests: ",
        "manifests/overlays/nope do not exist",
        "services[0].load.path: must be a URL path starting with '/'",
        "services[0].load.users: must be a whole number from 1 to 100000, not 0",
        "services[0].expect.hpa.scale_up_within: 'soon' is not a duration",
        "services[0].expect.hpa: need min < scale_up_to <= max, got 2 / 7 / 5",
        "services[0].expect.rollout.broken_imag: unknown key",
        "services[0].images.next: required by expect.rollout",
        "fix: correct the fields listed above",
    ):
        assert expected in text


def test_missing_file_and_bad_yaml_name_the_fix(tmp_path):
    with pytest.raises(InvalidSpec, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("services: [\n")
    with pytest.raises(InvalidSpec, match="not valid YAML"):
        load_spec(broken)


@pytest.mark.parametrize("rps", [".inf", ".nan", "-.inf"])
def test_infinite_and_not_a_number_rates_are_refused(tmp_path, rps):
    text = (ROOT / "scenarios" / "demo-service.spec.yaml").read_text()
    text = text.replace("../manifests/", f"{ROOT / 'manifests'}/")
    path = tmp_path / "spec.yaml"
    path.write_text(re.sub(r"rps: 4\b", f"rps: {rps}", text, count=1))
    with pytest.raises(InvalidSpec, match=r"load\.rps: must be a finite number > 0"):
        load_spec(path)


def test_a_spec_key_given_twice_is_refused(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("apiVersion: kube-harness/v1\nkind: ResilienceSpec\nkind: Other\n")
    with pytest.raises(InvalidSpec, match="the key 'kind' appears twice"):
        load_spec(path)


def test_wrong_kind_and_missing_sections(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("apiVersion: v0\nkind: Other\nservices: []\n")
    with pytest.raises(InvalidSpec) as caught:
        load_spec(path)
    text = str(caught.value)
    assert "spec.apiVersion: must be kube-harness/v1" in text
    assert "spec.kind: must be ResilienceSpec" in text
    assert "spec.services: must be a non-empty list" in text


@pytest.mark.parametrize(("raw", "seconds"), [(90, 90), ("90s", 90), ("1.5m", 90), ("500ms", 0.5)])
def test_durations(raw, seconds):
    assert parse_seconds(raw) == seconds


@pytest.mark.parametrize("raw", ["soon", "-3s", 0, True])
def test_bad_durations(raw):
    with pytest.raises(ValueError):
        parse_seconds(raw)


def test_fractions():
    assert parse_fraction("2%") == 0.02
    assert parse_fraction(0.5) == 0.5
    with pytest.raises(ValueError):
        parse_fraction("150%")


SERVICE = """
apiVersion: kube-harness/v1
kind: ResilienceSpec
services:
  - name: web
    manifests: {manifests}
    deployment: web
    container: web
    images: {{current: "example.org/web:v1.0.0"}}
    load: {{path: /, users: 1, cpu_path: /, cpu_users: 1}}
    slo: {{error_rate: 0%}}
    expect: {{}}
{extra}
"""
PLAIN = Path(__file__).parent / "data" / "render" / "plain-folder"


def write_spec(tmp_path: Path, extra: str = "", manifests: str = str(PLAIN)) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SERVICE.format(manifests=manifests, extra=extra))
    return path


def test_plain_manifests_a_port_a_go_build_and_archives(tmp_path: Path) -> None:
    (tmp_path / "web.tar").write_bytes(b"")
    (tmp_path / "oci" / "layout").mkdir(parents=True)
    (tmp_path / "oci" / "layout" / "index.json").write_text("{}")
    extra = (
        "    port: http\n"
        "    build: {go: github.com/example/web/cmd/web}\n"
        "    archives: [web.tar, oci/layout]\n"
    )
    service = load_spec(write_spec(tmp_path, extra)).services[0]
    assert service.manifests == PLAIN
    assert service.port == "http"
    assert service.build == GoProgramBuild((("/bin/web", "github.com/example/web/cmd/web"),))
    assert service.archives == (tmp_path / "web.tar", tmp_path / "oci" / "layout")


def test_load_workers_and_placement(tmp_path: Path) -> None:
    spec = SERVICE.replace("cpu_users: 1}", "cpu_users: 1, workers: 2, placement: cluster}")
    path = tmp_path / "spec.yaml"
    path.write_text(spec.format(manifests=PLAIN, extra=""))
    load = load_spec(path).services[0].load
    assert (load.workers, load.placement) == (2, "cluster")
    assert load_spec(write_spec(tmp_path)).services[0].load.placement == "host"


@pytest.mark.parametrize(
    ("given", "version_from"),
    [
        ("", "header:X-App-Version"),
        (", version: {{header: X-Version}}", "header:X-Version"),
        (", version: {{json: build.version}}", "json:build.version"),
    ],
)
def test_where_a_response_names_its_version(tmp_path: Path, given, version_from) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(SERVICE.replace("cpu_users: 1}", f"cpu_users: 1{given}}}").format(
        manifests=PLAIN, extra=""))  # fmt: skip
    assert load_spec(path).services[0].load.version_from == version_from


def test_a_go_build_laid_out_as_the_services_dockerfile(tmp_path: Path) -> None:
    extra = (
        "    build:\n"
        "      go:\n"
        "        /home/app/web: example.org/web/cmd/web\n"
        "        /usr/local/bin/webcli: example.org/web/cmd/webcli\n"
        "      workdir: /home/app\n"
        "      versions: {'6.9.2': v1.8.1-0.20250910200901-e86405a8674e}\n"
    )
    build = load_spec(write_spec(tmp_path, extra)).services[0].build
    assert build.programs == (
        ("/home/app/web", "example.org/web/cmd/web"),
        ("/usr/local/bin/webcli", "example.org/web/cmd/webcli"),
    )
    assert (build.package, build.workdir) == ("example.org/web/cmd/web", "/home/app")
    assert build.module_version("6.9.2") == "v1.8.1-0.20250910200901-e86405a8674e"
    assert build.module_version("v1.0.0") == "v1.0.0"


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        ("    port: 70000\n", "services[0].port: a port number is 1-65535, not 70000"),
        ("    port: Not_A_Name\n", "services[0].port: must be a port number or a port name"),
        ("    build: {go: github.com/x/y@v1.0.0}\n", "the version comes from each image's tag"),
        ("    build: {rust: x}\n", "a Go build is `{go: MAIN_PACKAGE}`"),
        ("    build: {go: {bin/app: example.org/app}}\n", "'bin/app' is not an absolute file"),
        ("    build: {go: example.org/app, versions: {'1.0': '1.0'}}\n", "versions: must map"),
        ("    build: docker\n", "'docker' is not an image builder; known: demo, or {go:"),
        ("    archives: [missing.tar]\n", "missing.tar is neither an image archive file nor"),
        ("    archives: []\n", "services[0].archives: must be a list of image archive paths"),
    ],
)
def test_bad_port_build_and_archives_are_named(tmp_path: Path, extra: str, complaint: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        load_spec(write_spec(tmp_path, extra))
    assert complaint in str(caught.value)


# --- the published JSON Schema ----------------------------------------------------------------

PUBLISHED_SCHEMA = ROOT / "docs" / "resilience-spec.schema.json"
SHIPPED_SPECS = [
    ROOT / "scenarios" / "demo-service.spec.yaml",
    *ROOT.glob("examples/*/*.spec.yaml"),
]


def schema_errors(document: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(spec_schema())
    return [error.message for error in validator.iter_errors(document)]


def test_the_published_schema_is_the_one_the_code_generates():
    assert json.loads(PUBLISHED_SCHEMA.read_text()) == spec_schema(), (
        "docs/resilience-spec.schema.json is stale: run "
        "`harness schema -o docs/resilience-spec.schema.json`"
    )
    jsonschema.Draft202012Validator.check_schema(spec_schema())


@pytest.mark.parametrize("path", SHIPPED_SPECS, ids=lambda p: p.parent.name)
def test_every_shipped_spec_passes_both_the_schema_and_the_loader(path):
    load_spec(path)
    assert schema_errors(yaml.safe_load(path.read_text())) == []


def test_a_drafted_spec_passes_the_schema(tmp_path):
    out = write_draft(ROOT / "manifests" / "overlays" / "ci", tmp_path / "demo.spec.yaml")
    assert schema_errors(yaml.safe_load(out.read_text())) == []


def edit(change):
    """The demo spec with one change applied to its service (a dict)."""
    document = yaml.safe_load((ROOT / "scenarios" / "demo-service.spec.yaml").read_text())
    del document["services"][1:]  # the demo service alone
    document["services"][0]["manifests"] = str(ROOT / "manifests" / "overlays" / "ci")
    change(document["services"][0])
    return document


@pytest.mark.parametrize(
    ("change", "loader_says"),
    [
        (lambda s: s.update(replica=2), "services[0].replica: unknown key"),
        (lambda s: s.pop("deployment"), "services[0].deployment: required"),
        (lambda s: s["load"].update(users="many"), "services[0].load.users: must be a whole"),
        (lambda s: s["load"].update(path="work"), "services[0].load.path: must be a URL path"),
        (lambda s: s["expect"]["hpa"].update(driver="stress"), "is not a way to raise CPU"),
        (lambda s: s["expect"]["rollout"].update(complete_within="2 minutes"), "not a duration"),
        (lambda s: s["slo"].update(p50="1s"), "unknown"),
        (lambda s: s["images"].pop("current"), "services[0].images: must map version names"),
        (lambda s: s.update(build={"go": "x", "tag": "v1"}), "a Go build is"),
        (lambda s: s.update(port=70000), "a port number is 1-65535"),
        (lambda s: s["load"].update(workers=-1), "services[0].load.workers: must be a whole"),
        (lambda s: s["load"].update(placement="laptop"), "'laptop' is not where load can run"),
        (lambda s: s["load"].update(users=10**12), "load.users: must be a whole number from 1"),
        (lambda s: s["load"].update(workers=1000), "load.workers: must be a whole number from 0"),
        (lambda s: s["load"].update(version={"body": "v"}), "load.version: must be {header: NAME}"),
        (
            lambda s: s["load"].update(version={"header": ""}),
            "load.version: must be {header: NAME}",
        ),
        (lambda s: s.update(name="../x"), "services[0].name: must be a DNS label"),
        (lambda s: s.update(name="Demo"), "services[0].name: must be a DNS label"),
        (lambda s: s.update(deployment="a/b"), "deployment: must be a Kubernetes object name"),
        (
            lambda s: s["expect"]["rollout"].update(complete_within=float("inf")),
            "must be over 0 and at most 24h",
        ),
    ],
)
def test_the_schema_and_the_loader_refuse_the_same_mistakes(tmp_path, change, loader_says):
    document = edit(change)
    assert schema_errors(document), "the schema accepted it"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(InvalidSpec, match=re.escape(loader_says)) as raised:
        load_spec(path)
    assert "1 problem(s)" in str(raised.value)  # that mistake, and only that one


def rollout_spec(tmp_path: Path, rollout: str, *, next_image: bool = True) -> Path:
    spec = SERVICE.replace("expect: {{}}", "expect: {{rollout: " + rollout + "}}")
    if next_image:
        current = '{{current: "example.org/web:v1.0.0"'
        spec = spec.replace(current, current + ', next: "example.org/web:v1.1"')
    path = tmp_path / "spec.yaml"
    path.write_text(spec.format(manifests=PLAIN, extra=""))
    return path


def test_a_rollout_names_its_strategy_rolling_by_default(tmp_path: Path) -> None:
    rolling_text = "{{complete_within: 60s, max_failed_requests: 0, stuck_detected_within: 30s}}"
    rolling = load_spec(rollout_spec(tmp_path, rolling_text)).services[0]
    assert (rolling.rollout.strategy, rolling.rollout.stuck_detected_within_s) == ("rolling", 30)
    assert rolling.promises("rollout.strategy=rolling")
    assert not rolling.promises("rollout.strategy=blue-green")
    blue_green_text = (
        "{{strategy: blue-green, label: example.com/slot, complete_within: 60s, "
        "max_failed_requests: 1, grace: 3s, versions: {{next: '1.5'}}}}"
    )
    blue_green = load_spec(rollout_spec(tmp_path, blue_green_text)).services[0]
    rollout = blue_green.rollout
    assert (rollout.strategy, rollout.label, rollout.grace_s) == (
        "blue-green",
        "example.com/slot",
        3,
    )
    assert blue_green.answers_version("next") == "1.5"
    assert blue_green.answers_version("current") == "v1.0.0"  # the image's tag
    canary_text = (
        "{{strategy: canary, steps: [0.1, 30%], complete_within: 1m, max_failed_requests: 0}}"
    )
    canary = load_spec(rollout_spec(tmp_path, canary_text)).services[0].rollout
    assert (canary.label, canary.steps, canary.step_for_s, canary.tolerance) == (
        "track",
        (0.1, 0.3),
        20,
        0.1,
    )


@pytest.mark.parametrize(
    ("rollout", "complaint"),
    [
        ("{{complete_within: 60s, max_failed_requests: 0}}",
         "rollout.stuck_detected_within: required for strategy rolling"),
        ("{{strategy: canary-ish, complete_within: 60s, max_failed_requests: 0}}",
         "'canary-ish' is not a rollout strategy the harness knows; use one of: rolling, "
         "blue-green, canary"),
        ("{{strategy: canary, complete_within: 60s, max_failed_requests: 0}}",
         "rollout.steps: required for strategy canary"),
        ("{{strategy: canary, steps: [50%, 25%], complete_within: 60s, max_failed_requests: 0}}",
         "rollout.steps: must be rising shares between 0% and 100%"),
        ("{{strategy: canary, steps: [25%, 100%], complete_within: 1m, max_failed_requests: 0}}",
         "rollout.steps: must be rising shares between 0% and 100% (100% is the promotion)"),
        ("{{strategy: blue-green, label: -slot, complete_within: 60s, max_failed_requests: 0}}",
         "rollout.label: must be a label key like `slot`"),
        ("{{strategy: blue-green, versions: {{next: 2}}, complete_within: 1m, "
         "max_failed_requests: 0}}", "rollout.versions: must map image version names"),
        ("{{strategy: blue-green, versions: {{nxt: '2'}}, complete_within: 1m, "
         "max_failed_requests: 0}}",
         "expect.rollout.versions.nxt: no image version 'nxt' (images: current, next)"),
        ("{{strategy: canary, steps: [50%], versions: {{next: v1.0.0}}, complete_within: 1m, "
         "max_failed_requests: 0}}",
         "expect.rollout: current and next both answer as version 'v1.0.0', so no answer "
         "could tell the canary release's two sides apart"),
    ],
)  # fmt: skip
def test_a_bad_rollout_is_named(tmp_path: Path, rollout: str, complaint: str) -> None:
    with pytest.raises(InvalidSpec, match=re.escape(complaint)):
        load_spec(rollout_spec(tmp_path, rollout))


def test_a_rollout_needs_the_next_image_it_moves_to(tmp_path: Path) -> None:
    rollout = "{{complete_within: 60s, max_failed_requests: 0, stuck_detected_within: 30s}}"
    with pytest.raises(InvalidSpec, match=re.escape("services[0].images.next: required by "
                                                    "expect.rollout")):  # fmt: skip
        load_spec(rollout_spec(tmp_path, rollout, next_image=False))


def test_promises_are_dotted_paths_into_the_spec_set_or_equal_to_a_value() -> None:
    demo, blue_green, *_ = load_spec(ROOT / "scenarios" / "demo-service.spec.yaml").services
    assert demo.promises("hpa") and demo.promises("slo.max_p95_ms")
    assert not blue_green.promises("hpa") and not blue_green.promises("slo.max_p95_ms")
    assert blue_green.promises("rollout.strategy=blue-green")
    with pytest.raises(InvalidConfiguration, match="a service's spec has no 'hpaa' there") as bad:
        demo.promises("hpaa")
    assert "self_healing" in bad.value.fix
    with pytest.raises(InvalidConfiguration, match="none \\(it is a value\\)"):
        demo.promises("slo.max_p95_ms.value")
