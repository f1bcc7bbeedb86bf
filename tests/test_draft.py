"""`harness init`: a commented draft resilience spec from a service's manifests (harness.draft)."""

from pathlib import Path

import pytest
import yaml

from harness.access import LoadEntry, reach
from harness.cli import main
from harness.draft import _matches, _scalar, _scale_down_steps, draft_spec, write_draft
from harness.errors import InvalidConfiguration
from harness.render import render
from harness.spec import load_spec

DATA = Path(__file__).parent / "data" / "draft"
KUSTOMIZATION = DATA / "kustomization-web"
PLAIN = DATA / "plain-manifests"
CHART = Path(__file__).parent / "data" / "charts" / "demo"


def _draft(tmp_path: Path, source: Path) -> tuple[str, dict]:
    out = write_draft(source, tmp_path / "resilience.yaml")
    text = out.read_text()
    return text, yaml.safe_load(text)


def _lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(word in line for word in words)]


def _comments(text: str) -> str:
    """Every comment of `text` as one line of prose, wherever the emitter wrapped it."""
    return " ".join(line.split("# ", 1)[1] for line in text.splitlines() if "# " in line)


def test_kustomization_draft_derives_every_section_from_the_manifests(tmp_path):
    text, data = _draft(tmp_path, KUSTOMIZATION)
    assert (data["apiVersion"], data["kind"]) == ("kube-harness/v1", "ResilienceSpec")
    (web,) = data["services"]
    assert (tmp_path / web["manifests"]).resolve() == KUSTOMIZATION.resolve()
    assert (web["name"], web["deployment"], web["container"], web["port"]) == (
        "web",
        "web",
        "web",
        "http",
    )
    image = "registry.example.com/shop/web:1.4.2"
    assert web["images"] == {"current": image, "next": image}
    assert web["load"] == {
        "path": "/",
        "users": 4,
        "cpu_path": "/",
        "cpu_users": 6,
        "rps": 4,
        "timeout": "5s",
    }
    assert web["slo"] == {"error_rate": "0%", "p95": "500ms", "p99": "2s", "min_rps": 5}
    expect = web["expect"]
    assert expect["hpa"] == {
        "name": "web",
        "min": 2,
        "max": 6,
        "scale_up_to": 3,
        "scale_up_within": "114s",  # 60 metrics + 15 sync + 0 window + 30 start + 9 probes
        "scale_down_within": "255s",  # 60 metrics + 60 window + 15 sync + 3 x 30 steps + 30
        "max_direction_changes": 2,
    }
    assert expect["probes"] == {
        "readiness_leaves_endpoints_within": "16s",  # 5 x 2 + 1 + 5
        "liveness_restarts_within": "42s",  # 10 x 3 + 2 + 10
        "startup_delay": "22s",  # 3/4 of 2 x 15
    }
    assert expect["self_healing"] == {"ready_within": "39s", "max_error_rate": "10%"}
    assert expect["rollout"] == {
        "complete_within": "128s",  # 2 batches x (30 + 9) + 20 grace + 30
        "max_failed_requests": 0,
        "stuck_detected_within": "90s",  # progressDeadlineSeconds 60 + 30
    }
    # The arithmetic and what was left out are comments beside the values.
    assert _lines_with(text, "container: web", "# other containers: log-shipper")
    assert _lines_with(text, "also selecting them: web-metrics")
    comments = _comments(text)
    assert "PodDisruptionBudget web selects these pods (minAvailable: 1)" in comments
    assert "0s stabilization (no behavior.scaleUp: Kubernetes' default)" in comments
    assert "90s policy steps (6 -> 2 replicas)" in comments
    assert "readiness 5s period x 2 failures + 1s timeout + 5s margin" in comments
    assert "3/4 of the 30s the startup probe allows (2s x 15 failures)" in comments
    assert _lines_with(text, "next: ", "# TODO")


def test_the_draft_is_a_valid_spec_whose_port_takes_the_load(tmp_path):
    for source in (KUSTOMIZATION, PLAIN, PLAIN / "api.yaml"):
        out = write_draft(source, tmp_path / f"{source.stem}.yaml")
        spec = load_spec(out)
        objects = render(source)
        for service in spec.services:
            if service.port is not None:
                assert reach(objects, LoadEntry(service.deployment, service.port)) is not None


def test_comments_are_yaml_comments_not_values(tmp_path):
    for source in (KUSTOMIZATION, PLAIN):
        out = write_draft(source, tmp_path / f"{source.name}.yaml")
        text, data = out.read_text(), yaml.safe_load(out.read_text())
        assert "#" in text

        def walk(value):
            if isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            else:
                assert "#" not in str(value), value

        walk(data)
        assert max(len(line) for line in text.splitlines() if "# " in line) <= 100


def test_plain_folder_draft_has_one_service_per_deployment_and_says_what_is_missing(tmp_path):
    text, data = _draft(tmp_path, PLAIN)
    api, worker = data["services"]
    assert (tmp_path / api["manifests"]).resolve() == PLAIN.resolve()
    assert api["port"] == 80  # the Service's unnamed port, reaching containerPort 5000
    assert "hpa" not in api["expect"]
    comments = _comments(text)
    assert "no HorizontalPodAutoscaler targets Deployment api: no hpa expectation" in comments
    assert "no PodDisruptionBudget selects the pods of Deployment api" in comments
    assert api["expect"]["probes"] == {
        "readiness_leaves_endpoints_within": "15s",  # exec probe: 3 x 3 + 1 + 5
        "liveness_restarts_within": "75s",  # 15 x 4 + 5 + 10
        "startup_delay": "52s",  # no startup probe: 3/4 of liveness's 10 + 15 x 4
    }
    assert api["expect"]["rollout"]["complete_within"] == "159s"  # 3 x (30 + 3) + 30 + 30
    assert api["expect"]["rollout"]["stuck_detected_within"] == "630s"  # default deadline
    assert "port" not in worker and "probes" not in worker["expect"]
    assert "no Service selects Deployment worker and its containers declare no port" in comments
    assert "Deployment worker has no readinessProbe and no livenessProbe" in comments
    assert "Recreate stops every pod first" in comments


def test_a_single_manifest_file_is_drafted_with_its_own_path(tmp_path):
    out = tmp_path / "specs" / "api.spec.yaml"
    out.parent.mkdir()
    write_draft(PLAIN / "api.yaml", out)
    (api,) = yaml.safe_load(out.read_text())["services"]
    assert (out.parent / api["manifests"]).resolve() == (PLAIN / "api.yaml").resolve()
    assert "# manifest file, relative to this file" in out.read_text()


@pytest.mark.builds
def test_a_helm_chart_is_drafted_from_its_default_values(tmp_path):
    out = tmp_path / "shop.spec.yaml"
    write_draft(CHART, out)
    (demo,) = yaml.safe_load(out.read_text())["services"]
    assert (demo["deployment"], demo["container"], demo["port"]) == ("demo", "demo", "http")
    assert (
        "# Helm chart, rendered with its default values, relative to this file" in out.read_text()
    )
    assert load_spec(out).services[0].helm.chart == CHART.resolve()


@pytest.mark.parametrize(
    ("source", "message", "fix"),
    [
        ("missing", "manifests {path} do not exist", "a kustomization directory"),
        ("invalid-no-manifests", "holds no kustomization.yaml and no manifest", "point at"),
        ("invalid-no-deployment", "holds no Deployment (found: Service orphan)", "Deployment"),
        ("invalid-yaml", "do not build", "kubectl kustomize"),
        ("invalid-yaml-plain", "not valid YAML", "fix the YAML syntax"),
    ],
)
def test_bad_input_is_one_error_with_the_fix_and_writes_nothing(
    tmp_path, capsys, source, message, fix
):
    path = DATA / source
    out = tmp_path / "resilience.yaml"
    with pytest.raises(InvalidConfiguration) as caught:
        write_draft(path, out)
    assert message.format(path=path) in caught.value.message
    assert fix in caught.value.fix
    assert main(["init", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harness: error: ") and "fix: " in err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_is_kept_unless_forced(tmp_path, capsys):
    out = tmp_path / "resilience.yaml"
    out.write_text("mine\n")
    assert main(["init", str(KUSTOMIZATION), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"output {out} already exists" in err and "--force" in err
    assert out.read_text() == "mine\n"
    assert main(["init", str(KUSTOMIZATION), "-o", str(out), "--force"]) == 0
    assert yaml.safe_load(out.read_text())["services"][0]["name"] == "web"


def test_output_must_be_a_file_in_an_existing_folder(tmp_path):
    with pytest.raises(InvalidConfiguration, match="is a folder"):
        write_draft(KUSTOMIZATION, tmp_path)
    with pytest.raises(InvalidConfiguration, match="does not exist") as caught:
        write_draft(KUSTOMIZATION, tmp_path / "nope" / "spec.yaml")
    assert "-o" in caught.value.fix
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_resilience_yaml_in_the_current_folder_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["init", str(KUSTOMIZATION)]) == 0
    assert "wrote resilience.yaml" in capsys.readouterr().out
    assert load_spec(tmp_path / "resilience.yaml").services[0].hpa.max == 6


def test_hpa_that_cannot_scale_is_left_out_with_the_reason(tmp_path):
    manifests = tmp_path / "m.yaml"
    hpa = (KUSTOMIZATION / "hpa.yaml").read_text().replace("maxReplicas: 6", "maxReplicas: 2")
    manifests.write_text((KUSTOMIZATION / "deployment.yaml").read_text() + "---\n" + hpa)
    text = draft_spec(manifests, tmp_path / "out.yaml")
    assert "hpa" not in yaml.safe_load(text)["services"][0]["expect"]
    assert "HorizontalPodAutoscaler web: it keeps 2..2 replicas" in _comments(text)


def test_scale_down_steps_follow_the_policies():
    pods = {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}
    assert _scale_down_steps(pods, 6, 2)[0] == 90  # 6 -> 5 now, then 3 more periods
    assert _scale_down_steps({}, 6, 2)[0] == 0  # default: 100% at once
    halves = {"policies": [{"type": "Percent", "value": 50, "periodSeconds": 10}]}
    assert _scale_down_steps(halves, 8, 1)[0] == 20  # 8 -> 4 -> 2 -> 1
    both = {"policies": [*pods["policies"], *halves["policies"]], "selectPolicy": "Min"}
    assert _scale_down_steps(both, 4, 2)[0] == 30  # the smaller change: 1 pod per step


def test_label_selectors_match_as_kubernetes_does():
    labels = {"app": "web", "tier": "front"}
    assert _matches({"app": "web"}, labels)  # a Service's plain selector
    assert not _matches({}, labels) and not _matches(None, labels)
    assert _matches({}, labels, empty_is_all=True)  # a PDB's empty LabelSelector
    expressions = [
        {"key": "tier", "operator": "In", "values": ["front", "edge"]},
        {"key": "canary", "operator": "DoesNotExist"},
    ]
    assert _matches({"matchLabels": {"app": "web"}, "matchExpressions": expressions}, labels)
    assert not _matches({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                               "values": ["front"]}]}, labels)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "written"),
    [("/", "/"), ("0%", "0%"), ("80", '"80"'), ("yes", '"yes"'), ("a: b", '"a: b"'), (80, "80")],
)
def test_scalars_are_quoted_only_when_yaml_would_misread_them(value, written):
    assert _scalar(value) == written
    assert yaml.safe_load(f"k: {written}")["k"] == value
