"""Image archives built on this machine: their format, the build cache, the root filesystem."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.errors import CommandFailed, InvalidConfiguration
from harness.images import builders, debian_rootfs, write_oci_archive
from harness.images import load as load_image
from harness.images.cache import cached, images_dir
from harness.images.layers import files_layer
from harness.images.oci import archive_ref, file_digest, normalize_ref
from harness.spec import GoProgramBuild


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("busybox:1.35", "docker.io/library/busybox:1.35"),
        ("demo/app:0.1", "docker.io/demo/app:0.1"),
        ("localhost/kube-harness/pause:1.0", "localhost/kube-harness/pause:1.0"),
        ("registry.example:5000/a/b:2", "registry.example:5000/a/b:2"),
    ],
)
def test_references_are_spelled_as_the_cri_looks_them_up(ref: str, expected: str) -> None:
    assert normalize_ref(ref) == expected


@pytest.mark.parametrize("ref", ["demo/app", "demo/app:latest", "localhost:5000/app"])
def test_references_without_a_pinned_tag_are_refused(ref: str) -> None:
    with pytest.raises(InvalidConfiguration, match="tag"):
        normalize_ref(ref)


@pytest.fixture
def layer(tmp_path: Path) -> Path:
    hello = tmp_path / "hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    return files_layer(
        tmp_path / "layer.tar", files={"bin/hello": hello}, symlinks={"hi": "/bin/hello"}
    )


def test_archive_is_an_oci_layout_with_a_docker_manifest(tmp_path: Path, layer: Path) -> None:
    archive = write_oci_archive(
        tmp_path / "app.tar", ref="demo/app:0.1", layers=[layer], entrypoint=["/bin/hello"],
        cmd=["--loud"], env={"MODE": "test"}, workdir="/srv", user="65534",
    )  # fmt: skip
    with tarfile.open(archive) as tar:

        def doc(name: str) -> dict | list:
            member = tar.extractfile(name)
            assert member is not None, name
            return json.load(member)

        assert doc("oci-layout") == {"imageLayoutVersion": "1.0.0"}
        (entry,) = doc("index.json")["manifests"]
        assert entry["annotations"] == {
            "io.containerd.image.name": "docker.io/demo/app:0.1",
            "org.opencontainers.image.ref.name": "0.1",
        }
        manifest = doc("blobs/sha256/" + entry["digest"].removeprefix("sha256:"))
        config = doc("blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:"))
        (docker,) = doc("manifest.json")
    layer_digest, layer_size = file_digest(layer)
    assert manifest["layers"] == [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
         "size": layer_size}
    ]  # fmt: skip
    assert config["rootfs"]["diff_ids"] == [layer_digest]
    assert config["config"] == {
        "Entrypoint": ["/bin/hello"], "Cmd": ["--loud"], "Env": ["MODE=test"],
        "WorkingDir": "/srv", "User": "65534",
    }  # fmt: skip
    assert docker["RepoTags"] == ["demo/app:0.1"]
    assert archive_ref(archive) == "docker.io/demo/app:0.1"


def test_layers_are_reproducible(tmp_path: Path, layer: Path) -> None:
    again = files_layer(
        tmp_path / "again.tar",
        files={"bin/hello": tmp_path / "hello"},
        symlinks={"hi": "/bin/hello"},
    )
    assert file_digest(again) == file_digest(layer)


def test_missing_layer_and_unreadable_archive_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfiguration, match=r"nope\.tar"):
        write_oci_archive(tmp_path / "x.tar", ref="a/b:1", layers=[tmp_path / "nope.tar"],
                          entrypoint=["/x"])  # fmt: skip
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file")
    with pytest.raises(InvalidConfiguration, match="not a readable image archive"):
        archive_ref(junk)
    assert not (tmp_path / "x.tar").exists()


def test_cache_builds_once_and_detects_a_damaged_entry(tmp_path: Path) -> None:
    builds = []

    def build(dest: Path) -> Path:
        builds.append(dest)
        dest.write_text("content")
        return dest

    entry = tmp_path / "thing.tar"
    assert cached(entry, build) == entry
    assert cached(entry, build) == entry
    assert len(builds) == 1
    entry.write_text("damaged")
    with pytest.raises(InvalidConfiguration, match=re.escape(f"cache entry {entry} is corrupted")):
        cached(entry, build)


def test_pause_and_busybox_images_are_built_from_this_machine(
    temp_cache: Path,
) -> None:
    pause, pause_ref = builders.pause_image()
    busybox, busybox_ref = builders.busybox_image()
    assert archive_ref(pause) == pause_ref
    assert archive_ref(busybox) == busybox_ref
    with tarfile.open(pause) as tar:
        names = tar.getnames()
    assert len([n for n in names if n.startswith("blobs/")]) == 3


@pytest.mark.builds
def test_debian_rootfs_is_built_once_and_reused(tmp_path: Path) -> None:
    rootfs = images_dir() / "rootfs-test-essential.tar"
    built = debian_rootfs(rootfs, include=[])
    stamp = built.stat().st_mtime
    with tarfile.open(built) as tar:
        names = tar.getnames()
    assert "./usr/bin/sh" in names or "./bin/sh" in names
    assert not any(n.startswith("./usr/share/man/") and n.count("/") > 4 for n in names)
    assert debian_rootfs(rootfs, include=[]).stat().st_mtime == stamp


@pytest.mark.builds
def test_debian_rootfs_with_an_unknown_package_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CommandFailed, match="mmdebstrap"):
        debian_rootfs(tmp_path / "bad.tar", include=["no-such-package-kh"])
    assert not (tmp_path / "bad.tar").exists()


def test_an_image_tag_that_names_no_module_version_points_at_versions() -> None:
    build = GoProgramBuild((("/bin/app", "example.org/app"),), versions={"1.0": "v1.0.0"})
    with pytest.raises(InvalidConfiguration) as caught:
        builders.go_program_image("example.org/app:6.9.2", build)
    assert "has no tag that is a module version of example.org/app" in caught.value.message
    assert "versions: {TAG: MODULE_VERSION}" in caught.value.fix


def test_a_go_build_is_laid_out_as_its_programs_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each program at its image path, the first the entrypoint, in the build's workdir."""
    built = {}

    def fake_go_program(package: str, version: str) -> Path:
        built[package] = version
        path = tmp_path / package.replace("/", "_")
        path.write_bytes(b"\x7fELF" + package.encode())
        return path

    monkeypatch.setattr("harness.cluster.build.go_program", fake_go_program)
    build = GoProgramBuild(
        (
            ("/home/app/web", "example.org/web/cmd/web"),
            ("/usr/local/bin/cli", "example.org/web/cmd/cli"),
        ),
        workdir="/home/app",
        versions={"6.9.2": "v1.8.1-0.20250910200901-e86405a8674e"},
    )
    archive = builders.go_program_image("example.org/web:6.9.2", build)
    assert set(built.values()) == {"v1.8.1-0.20250910200901-e86405a8674e"}
    with tarfile.open(archive) as image:
        blobs = {m.name: image.extractfile(m).read() for m in image.getmembers() if m.isfile()}
    configs = [json.loads(b) for b in blobs.values() if b.startswith(b"{") and b'"rootfs"' in b]
    (config,) = configs
    assert config["config"]["Entrypoint"] == ["/home/app/web"]
    assert config["config"]["WorkingDir"] == "/home/app"
    layer_names = set()
    for blob in blobs.values():
        if blob.startswith((b"{", b"[")):
            continue  # the index, manifests and config
        with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
            layer_names |= set(layer.getnames())
    assert {"home/app/web", "usr/local/bin/cli"} <= layer_names


# -- the load image's layer ---------------------------------------------------------------------


def test_the_load_layer_holds_locust_the_recorder_and_the_locustfiles():
    names = {name for name, _ in load_image.layer_files()}
    assert {
        "opt/locust/site/locust/__init__.py",
        "opt/locust/site/gevent/__init__.py",
        "opt/locust/site/yaml/__init__.py",
        "opt/harness/harness/load/_locust_entry.py",
        "opt/harness/harness/load/_recorder.py",
        "opt/harness/loadtests/demo.py",
        "opt/harness/loadtests/paths.py",
    } <= names
    assert not any("__pycache__" in name for name in names)
    assert not any(name.startswith("opt/harness/harness/cluster") for name in names)


@pytest.mark.slow
def test_the_load_layer_alone_runs_the_recorder_without_the_venv(tmp_path):
    """What the pods import, from the layer's files only (no site-packages, no Kubernetes)."""
    for name, source in load_image.layer_files():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(source)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp_path / load_image.SITE}:"
           f"{tmp_path / load_image.HARNESS}"}  # fmt: skip
    code = "import locust.main; from harness.load import _recorder, locust_shape; import sys; "
    code += "print(sorted(m for m in sys.modules if m.startswith('kubernetes')))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_load_image_reference_follows_its_content(monkeypatch):
    before = load_image.load_image_ref()
    assert before.startswith("localhost/kube-harness/locust:")
    assert load_image.load_image_ref() == before
    monkeypatch.setattr(load_image, "ENV", {**load_image.ENV, "EXTRA": "1"})
    assert load_image.load_image_ref() != before


def test_the_load_image_refuses_a_python_its_compiled_modules_do_not_fit(monkeypatch):
    monkeypatch.setattr(load_image, "IMAGE_PYTHON", (3, 12))
    with pytest.raises(InvalidConfiguration, match=r"the harness runs on Python 3\.11"):
        load_image.build_load_image()


def test_the_load_image_holds_every_harness_module_its_locust_processes_import():
    """What a Locust process imports of the harness at module level (harness.load, the
    recorder, the shape), transitively, is in the image: a module missing there
    (harness.user_files once) failed every load run from the cluster at its start."""
    import ast

    from harness.images import load as load_image

    root = load_image.HARNESS_ROOT
    load = root / "load"
    copied = {root / name for name in load_image.HARNESS_MODULES} | set(load.glob("*.py"))
    entry_points = ("__init__.py", "_recorder.py", "_locust_entry.py", "locust_shape.py")
    seen: set[Path] = set()
    todo = [load / name for name in entry_points]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.parse(path.read_text()).body:  # run at import; not lazy or TYPE_CHECKING
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in (n for n in names if n.startswith("harness.")):
                parts = root.parent / name.replace(".", "/")
                todo += [
                    p for p in (parts.with_suffix(".py"), parts / "__init__.py") if p.is_file()
                ]
    assert seen <= copied, sorted(str(p.relative_to(root)) for p in seen - copied)
