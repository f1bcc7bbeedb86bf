"""harness.scenario: images are loaded once per cluster, also across runs that keep it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import scenario
from harness.spec import InvalidSpec, load_spec

DEMO_SPEC = Path(__file__).resolve().parents[1] / "scenarios" / "demo-service.spec.yaml"


class FakeCluster:
    def __init__(self, kubeconfig: Path) -> None:
        self.options = SimpleNamespace(name="c1")
        self._kubeconfig = kubeconfig
        self.loaded: list[str] = []

    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def load_image(self, archive: Path) -> None:
        self.loaded.append(archive.name)


@pytest.fixture
def archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temp_cache: Path) -> list[Path]:
    made = [tmp_path / "demo-v1-aaa.tar", tmp_path / "demo-v2-bbb.tar"]
    monkeypatch.setattr(scenario, "build_service_images", lambda service: list(made))
    return made


def test_a_kept_cluster_is_not_loaded_again(archives: list[Path], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("cluster one")
    spec = load_spec(DEMO_SPEC)
    first, second = FakeCluster(kubeconfig), FakeCluster(kubeconfig)
    assert scenario.provide_images(first, spec) == archives
    assert scenario.provide_images(second, spec) == archives
    assert first.loaded == ["demo-v1-aaa.tar", "demo-v2-bbb.tar"]
    assert second.loaded == []


def test_a_recreated_cluster_or_a_new_image_is_loaded(archives: list[Path], tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("cluster one")
    spec = load_spec(DEMO_SPEC)
    scenario.provide_images(FakeCluster(kubeconfig), spec)
    kubeconfig.write_text("cluster two: new CA, new certificates")
    recreated = FakeCluster(kubeconfig)
    scenario.provide_images(recreated, spec)
    assert recreated.loaded == ["demo-v1-aaa.tar", "demo-v2-bbb.tar"]
    archives.append(tmp_path / "demo-v3-ccc.tar")
    rebuilt = FakeCluster(kubeconfig)
    scenario.provide_images(rebuilt, spec)
    assert rebuilt.loaded == ["demo-v3-ccc.tar"]


def test_a_spec_the_manifests_contradict_is_refused_before_any_cluster(tmp_path: Path) -> None:
    text = DEMO_SPEC.read_text().replace("deployment: demo", "deployment: web")
    text = text.replace("../manifests/", f"{DEMO_SPEC.parents[1] / 'manifests'}/")
    (tmp_path / "spec.yaml").write_text(text)
    with pytest.raises(InvalidSpec) as caught:
        scenario.read_spec(str(tmp_path / "spec.yaml"), tmp_path)
    assert "does not match the service's manifests" in str(caught.value)
    assert "services[0].deployment: the manifests have no Deployment 'web' (they have: demo)" in (
        str(caught.value)
    )
