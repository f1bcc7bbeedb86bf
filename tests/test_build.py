"""Tests for harness.cluster.build: pinned versions, wrapper module, cache, real builds."""

from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster import build
from harness.errors import InvalidConfiguration
from harness.paths import CACHE_DIR_ENV, cache_dir
from harness.wait import Pending, wait_for

DATA = Path(__file__).parent / "data" / "build"
VERSIONS = build.load_versions()
K8S = VERSIONS.go_source("kubernetes")
REAL_CACHE = cache_dir()


def staging_modules(go_mod_text: str) -> set[str]:
    """Modules a go.mod replaces with `./staging/...` (independent of the parser under test)."""
    return {
        line.split()[0]
        for line in go_mod_text.splitlines()
        if "=> ./staging/" in line and not line.startswith("replace")
    }


@pytest.fixture
def linked_cache(temp_cache: Path) -> Path:
    """A temporary cache that shares the real Go caches, so that builds are links, not cold."""
    temp_cache.mkdir()
    (temp_cache / "go").symlink_to(REAL_CACHE / "go")
    return temp_cache


@pytest.fixture
def no_go_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    assert shutil.which("go") is None


# --- pure logic -------------------------------------------------------------------------------


def test_versions_file_pins_every_component() -> None:
    assert K8S.version == "v1.34.4"
    assert K8S.replacement_version == "v0.34.4"
    assert (
        VERSIONS.with_version("kubernetes", "v1.33.2").go_source("kubernetes").replacement_version
        == "v0.33.2"
    )
    assert VERSIONS.go_source("etcd").replacement_version == "v3.6.5"
    assert VERSIONS.go_source("kind").version == "v0.30.0"
    assert {p.name for p in VERSIONS.debian_packages} == {
        "containerd",
        "runc",
        "containernetworking-plugins",
    }
    for name in ("kube-apiserver", "kubelet", "kubeadm", "etcd", "coredns", "metrics-server"):
        assert name in VERSIONS.component_names


def test_invalid_versions_file_is_named() -> None:
    invalid = DATA / "invalid-versions-no-version.yaml"
    with pytest.raises(InvalidConfiguration, match=re.escape(str(invalid))):
        build.load_versions(invalid)


def test_wrapper_pins_every_required_staging_module_of_the_tag() -> None:
    text = (DATA / "kubernetes-v1.34.4.go.mod").read_text()
    go_mod = build.parse_go_mod(text)
    wrapper = build.render_wrapper_go_mod(K8S, {"k8s.io/kubernetes": go_mod})

    assert "\tk8s.io/kubernetes v1.34.4\n" in wrapper
    assert "\ngo 1.24.0\n" in wrapper
    assert "=> ./" not in wrapper
    required_staging = staging_modules(text) & go_mod.requires
    assert "k8s.io/client-go" in required_staging
    for module in required_staging:
        assert f"\t{module} v0.34.4\n" in wrapper
        assert f"\t{module} => {module} v0.34.4\n" in wrapper
    # Staging modules the tag does not require (examples) have nothing to pin.
    assert "k8s.io/sample-controller" not in wrapper


def test_wrapper_for_etcd_pins_sibling_modules_but_not_forbidden_markers() -> None:
    etcd = VERSIONS.go_source("etcd")
    go_mods = {
        "go.etcd.io/etcd/server/v3": build.parse_go_mod(
            (DATA / "etcd-server-v3.6.5.go.mod").read_text()
        ),
        "go.etcd.io/etcd/etcdctl/v3": build.parse_go_mod(
            (DATA / "etcdctl-v3.6.5.go.mod").read_text()
        ),
    }
    wrapper = build.render_wrapper_go_mod(etcd, go_mods)

    assert "\tgo.etcd.io/etcd/api/v3 => go.etcd.io/etcd/api/v3 v3.6.5\n" in wrapper
    assert "\tgo.etcd.io/etcd/server/v3 v3.6.5\n" in wrapper
    assert "FORBIDDEN" not in wrapper
    assert "go.etcd.io/etcd =>" not in wrapper


def test_parse_go_mod_reads_single_line_and_block_forms() -> None:
    go_mod = build.parse_go_mod(
        "module example.com/m\n\ngo 1.22 // minimum\n\n"
        "require example.com/a v1.0.0\n"
        "require (\n\texample.com/b v0.0.0 // indirect\n)\n"
        "replace example.com/a v1.0.0 => ../a\n"
        "replace (\n\texample.com/b => ./b\n\texample.com/c => example.com/c v1.2.3\n)\n"
    )
    assert go_mod == build.GoMod(
        "1.22",
        frozenset({"example.com/a", "example.com/b"}),
        frozenset({"example.com/a", "example.com/b"}),
        ("example.com/c => example.com/c v1.2.3",),
    )


@pytest.mark.parametrize(
    ("output", "version", "matches"),
    [
        ("Kubernetes v1.34.4\n", "v1.34.4", True),
        ("Client Version: v1.34.4\nKustomize Version: v5.7.1\n", "v1.34.4", True),
        ("etcd Version: 3.6.5\nGit SHA: a0614505\n", "v3.6.5", True),
        ("CoreDNS-1.12.1\nlinux/amd64, go1.26.8, \n", "v1.12.1", True),
        ("Kubernetes v1.34.40\n", "v1.34.4", False),
        ("Kubernetes v1.34.4-dirty\n", "v1.34.4", False),
        ("Kubernetes v11.34.4\n", "v1.34.4", False),
        ("etcd Version: 3.4.23\n", "v3.6.5", False),
        ("", "v1.34.4", False),
    ],
)
def test_version_matches(output: str, version: str, matches: bool) -> None:
    assert build.version_matches(output, version) is matches


def test_stamp_notices_truncation_corruption_and_changes(tmp_path: Path) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    problem = build.stamp_problem
    assert problem(binary, "v1.0.0", "r1") == "no stamp file: its build never finished"
    build.write_stamp(binary, "v1.0.0", "r1")
    assert problem(binary, "v1.0.0", "r1") is None
    assert "stamp is for version v1.0.0" in problem(binary, "v2.0.0", "r1")
    assert "other settings" in problem(binary, "v1.0.0", "r2")

    content = binary.read_bytes()
    binary.write_bytes(content[:100])
    assert "truncated" in problem(binary, "v1.0.0", "r1")

    binary.write_bytes(content[:-1] + b"\x00")
    assert "corrupted" in problem(binary, "v1.0.0", "r1")


def test_recipe_changes_with_the_build_settings() -> None:
    kubelet = next(b for b in K8S.binaries if b.name == "kubelet")
    changed = dataclasses.replace(K8S, version_ldflags=(*K8S.version_ldflags, "x.y=z"))
    assert build.build_recipe(K8S, kubelet) == build.build_recipe(K8S, kubelet)
    assert build.build_recipe(K8S, kubelet) != build.build_recipe(changed, kubelet)


def test_binary_in_search_dir_with_the_pinned_version_is_used(
    tmp_path: Path, temp_cache: Path, no_go_on_path: None
) -> None:
    fake = tmp_path / "kube-scheduler"
    fake.write_text("#!/bin/sh\necho Kubernetes v1.34.4\n")
    fake.chmod(0o755)
    found = build.ensure_binaries(["kube-scheduler"], search_dirs=[tmp_path])
    assert found == {"kube-scheduler": fake}


def test_unknown_component_is_refused() -> None:
    with pytest.raises(InvalidConfiguration, match=r"unknown component.*kube-dns"):
        build.ensure_binaries(["kube-dns"])


# --- bad input on the real toolchain, proxy and cache -----------------------------------------


def test_missing_go_toolchain_is_one_clear_error(
    tmp_path: Path, temp_cache: Path, no_go_on_path: None, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "kube-scheduler"
    wrong.write_text("#!/bin/sh\necho Kubernetes v1.33.0\n")
    wrong.chmod(0o755)

    with pytest.raises(build.GoToolchainMissing) as caught:
        build.ensure_binaries(["kube-scheduler"], search_dirs=[tmp_path])

    assert "no Go toolchain" in caught.value.message
    assert "https://go.dev/dl/" in caught.value.fix
    assert "'Kubernetes v1.33.0' is not kube-scheduler v1.34.4" in capsys.readouterr().err
    assert not temp_cache.exists()


def test_corrupted_cache_entry_is_named_and_never_used(
    temp_cache: Path, no_go_on_path: None, capsys: pytest.CaptureFixture[str]
) -> None:
    cached = build.cached_path(temp_cache, "kube-scheduler", K8S.version)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF" + b"x" * 4096)
    scheduler = next(b for b in K8S.binaries if b.name == "kube-scheduler")
    build.write_stamp(cached, K8S.version, build.build_recipe(K8S, scheduler))
    cached.write_bytes(b"\x7fELF" + b"y" * 4096)

    with pytest.raises(build.GoToolchainMissing):
        build.ensure_binaries(["kube-scheduler"])

    assert "is not usable (sha256 differs from the one recorded when built (corrupted))" in (
        capsys.readouterr().err
    )


@pytest.mark.builds
def test_version_missing_from_the_proxy_fails_fast_and_leaves_nothing(temp_cache: Path) -> None:
    started = time.monotonic()
    with pytest.raises(build.PinnedVersionNotFound) as caught:
        build.ensure_binaries(
            ["kube-scheduler"], versions=VERSIONS.with_version("kubernetes", "v1.34.99")
        )

    assert time.monotonic() - started < 30
    assert "k8s.io/kubernetes has no version v1.34.99" in caught.value.message
    assert "versions.yaml" in caught.value.fix
    assert not (temp_cache / "bin").exists()
    assert not (temp_cache / "wrappers").exists() or not any((temp_cache / "wrappers").iterdir())


# --- real builds (minutes when cold, seconds once cached) -------------------------------------


@pytest.mark.builds
def test_every_component_shows_its_pinned_version() -> None:
    found = build.ensure_binaries()

    assert set(found) == set(VERSIONS.component_names)
    for source in VERSIONS.go_sources:
        for binary in source.binaries:
            shown = subprocess.run(
                [found[binary.name], *binary.version_args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert build.version_matches(shown.stdout + shown.stderr, source.version), (
                f"{found[binary.name]} {' '.join(binary.version_args)} printed "
                f"{shown.stdout + shown.stderr!r}, not {source.version}"
            )
    for package in VERSIONS.debian_packages:
        for name in package.binaries:
            assert found[name].is_file(), f"{name} of Debian {package.name} missing"


@pytest.mark.builds
def test_corrupted_cached_binary_is_rebuilt(
    linked_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    coredns = VERSIONS.go_source("coredns")
    with monkeypatch.context() as real_cache:
        real_cache.setenv(CACHE_DIR_ENV, str(REAL_CACHE))
        real = build.ensure_binaries(["coredns"])["coredns"]
    cached = build.cached_path(linked_cache, "coredns", coredns.version)
    cached.parent.mkdir(parents=True)
    shutil.copy(real, cached)
    recipe = build.build_recipe(coredns, coredns.binaries[0])
    build.write_stamp(cached, coredns.version, recipe)
    with cached.open("r+b") as stream:
        stream.truncate(cached.stat().st_size // 2)

    rebuilt = build.ensure_binaries(["coredns"])["coredns"]

    assert rebuilt == cached
    assert build.stamp_problem(rebuilt, coredns.version, recipe) is None
    shown = subprocess.run([rebuilt, "-version"], capture_output=True, text=True, check=True)
    assert build.version_matches(shown.stdout, coredns.version)
    assert not any((linked_cache / "wrappers").iterdir())


@pytest.mark.builds
def test_failed_build_shows_compiler_output_and_leaves_nothing(linked_cache: Path) -> None:
    cache = linked_cache
    coredns = VERSIONS.go_source("coredns")
    broken = dataclasses.replace(
        coredns,
        binaries=(build.GoBinary("coredns", "github.com/coredns/coredns/no-such-cmd", ()),),
    )
    versions = dataclasses.replace(
        VERSIONS, go_sources=tuple(broken if s is coredns else s for s in VERSIONS.go_sources)
    )

    with pytest.raises(build.BuildFailed) as caught:
        build.ensure_binaries(["coredns"], versions=versions)

    assert "go build github.com/coredns/coredns/no-such-cmd@v1.12.1 exited 1" in str(caught.value)
    assert "no-such-cmd" in caught.value.message.split("exited 1:", 1)[1]
    assert list(build.cached_path(cache, "coredns", coredns.version).parent.iterdir()) == []
    assert not any((cache / "wrappers").iterdir())


@pytest.mark.builds
def test_interrupted_build_leaves_nothing_that_looks_valid(linked_cache: Path) -> None:
    cache = linked_cache
    script = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from harness.cluster.build import ensure_binaries\n"
        "ensure_binaries(['kube-apiserver'])\n"
    )
    building = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[1],
        text=True,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: any(cache.glob("wrappers/*/kube-apiserver.log")) or Pending("not started"),
            what="go build of kube-apiserver to start",
            timeout=180,  # the proxy's answers first; a busy machine slows them
        )
        building.send_signal(signal.SIGINT)
        _, stderr = building.communicate(timeout=30)
    finally:
        building.kill()

    assert "building kube-apiserver v1.34.4: failed after" in stderr
    assert list(build.cached_path(cache, "kube-apiserver", K8S.version).parent.iterdir()) == []
    assert not any((cache / "wrappers").iterdir())


@pytest.mark.builds
def test_build_all_says_where_each_binary_came_from(capsys: pytest.CaptureFixture[str]) -> None:
    paths = build.build_all(["kubectl", "runc"])

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[:2] == ["kubectl", str(paths["kubectl"])]
    assert printed[1].startswith(f"runc     {paths['runc']}  (Debian runc ")


@pytest.mark.builds
def test_program_whose_version_list_the_proxy_refuses_is_built_all_the_same() -> None:
    """kube-state-metrics' version list answers 403 on the proxy, so `go install` fails
    ("loading deprecation"); the program is built through a wrapper module instead."""
    binary = build.go_program("k8s.io/kube-state-metrics/v2", "v2.18.0")
    assert binary.name == "kube-state-metrics"
    shown = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    assert "--telemetry-port" in shown.stdout + shown.stderr
