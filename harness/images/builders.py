"""The images the harness builds itself: the pod sandbox (pause), addons, a busybox test image.

Each is one layer of static binaries from this machine, so no registry is ever needed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.commands import run
from harness.errors import InvalidConfiguration
from harness.images.cache import cached, images_dir
from harness.images.layers import files_layer
from harness.images.oci import file_digest, split_ref, write_oci_archive

if TYPE_CHECKING:
    from harness.spec import GoProgramBuild

PAUSE_SOURCE = Path(__file__).with_name("pause.c")
PAUSE_REF = "localhost/kube-harness/pause:1.0"
BUSYBOX_REF = "localhost/kube-harness/busybox:1.35"
BUSYBOX = Path("/bin/busybox")
# Applets the test images call; busybox picks the applet from argv[0].
BUSYBOX_APPLETS = (
    "sh", "httpd", "wget", "nslookup", "sleep", "cat", "echo", "ls", "ps", "kill", "nc",
    "hostname", "env", "true", "false", "dd", "yes", "timeout", "ip", "grep", "ssl_client",
    "mkdir", "rm",
)  # fmt: skip


def _short_digest(path: Path) -> str:
    return file_digest(path)[0].removeprefix("sha256:")[:12]


def _single_layer_image(
    dest: Path, *, ref: str, files: dict[str, Path], symlinks: dict[str, str], entrypoint: list[str]
) -> Path:
    with tempfile.TemporaryDirectory(prefix="kh-layer-") as tmp:
        layer = files_layer(Path(tmp) / "layer.tar", files=files, symlinks=symlinks)
        return write_oci_archive(dest, ref=ref, layers=[layer], entrypoint=entrypoint)


def pause_image() -> tuple[Path, str]:
    """Archive and reference of the pod sandbox image, compiled from pause.c with gcc -static.

    Raises:
        InvalidConfiguration: gcc (or static libc) is missing.
    """
    key = _short_digest(PAUSE_SOURCE)

    def build(dest: Path) -> Path:
        if not shutil.which("gcc"):
            raise InvalidConfiguration(
                "gcc is needed to build the pause image", fix="apt-get install gcc libc6-dev"
            )
        with tempfile.TemporaryDirectory(prefix="kh-pause-") as tmp:
            binary = Path(tmp) / "pause"
            run(
                ["gcc", "-static", "-Os", "-o", binary, PAUSE_SOURCE],
                fix="apt-get install gcc libc6-dev (static libc comes with libc6-dev)",
            )
            run(["strip", binary])
            return _single_layer_image(
                dest, ref=PAUSE_REF, files={"pause": binary}, symlinks={}, entrypoint=["/pause"]
            )

    return cached(images_dir() / f"pause-{key}.tar", build), PAUSE_REF


def static_binary_image(name: str, binary: Path) -> tuple[Path, str]:
    """Archive and reference of an image holding one static binary as its entrypoint.

    The tag is derived from the binary's content, so a rebuilt binary gives a new image.
    """
    ref = f"localhost/kube-harness/{name}:{_short_digest(binary)}"
    return layered_image(ref, files={name: binary}, entrypoint=[f"/{name}"], name=name), ref


def layered_image(
    ref: str,
    *,
    files: Mapping[str, Path],
    entrypoint: list[str],
    base: Path | None = None,
    name: str,
    user: str | None = None,
    workdir: str = "/",
) -> Path:
    """Archive of image `ref`: `files` (image path -> host file) on an optional `base` layer.

    Cached under a key of the reference and every input's content, so a rebuilt binary or
    base gives a new archive.
    """
    inputs = [ref, *entrypoint, *(f"{k}={_short_digest(v)}" for k, v in sorted(files.items()))]
    if base is not None:
        inputs.append(_short_digest(base))
    if user is not None:
        inputs.append(f"user={user}")
    if workdir != "/":
        inputs.append(f"workdir={workdir}")
    key = hashlib.sha256("\n".join(inputs).encode()).hexdigest()[:12]

    def build(dest: Path) -> Path:
        with tempfile.TemporaryDirectory(prefix="kh-layer-") as tmp:
            layer = files_layer(Path(tmp) / "layer.tar", files=files)
            layers = [base, layer] if base is not None else [layer]
            return write_oci_archive(
                dest, ref=ref, layers=layers, entrypoint=entrypoint, user=user, workdir=workdir
            )

    return cached(images_dir() / f"{name}-{key}.tar", build)


# The securityContext of the harness's own busybox containers in a service's namespace (probes,
# listeners, clients): admitted by a pod that says runAsNonRoot and by a namespace that
# enforces the restricted Pod Security Standard. So they take no port below 1024.
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# distroless's "nonroot": manifests that say runAsNonRoot (and no runAsUser) run as it.
NONROOT_USER = "65532:65532"


def go_program_image(ref: str, build: GoProgramBuild) -> Path:
    """Archive of image `ref` holding `build`'s Go main packages, each built at the module
    version that is `ref`'s tag (or that `build.versions` maps it to), laid out at their
    image paths, the first the entrypoint, running as `build.user` in `build.workdir`.

    Raises:
        InvalidConfiguration: `ref`'s tag names no module version (vX.Y.Z).
        BuildFailed, GoToolchainMissing: see harness.cluster.build.go_program.

    Example:
        >>> go_program_image("ghcr.io/mccutchen/go-httpbin:v2.26.0", GoProgramBuild(
        ...     (("/bin/go-httpbin", "github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin"),)
        ... ))  # doctest: +SKIP
    """
    from harness.cluster.build import go_program

    repository, tag, _ = split_ref(ref)
    version = build.module_version(tag) if tag else ""
    if not re.fullmatch(r"v\d+\.\d+\.\d+\S*", version):
        raise InvalidConfiguration(
            f"image {ref} has no tag that is a module version of {build.package}",
            fix=f"tag the image with the module version to build, e.g. {repository}:v1.2.3, "
            "or map its tag to one in the spec's `build: {versions: {TAG: MODULE_VERSION}}`",
        )
    files = {path.lstrip("/"): go_program(package, version) for path, package in build.programs}
    entrypoint = build.programs[0][0]
    return layered_image(
        ref,
        files=files,
        entrypoint=[entrypoint],
        name=entrypoint.rsplit("/", 1)[-1],
        user=build.user,
        workdir=build.workdir,
    )


def busybox_image() -> tuple[Path, str]:
    """Archive and reference of a busybox image (Debian's busybox-static) for tests and demos.

    Raises:
        InvalidConfiguration: busybox-static is not installed.
    """
    if not BUSYBOX.is_file():
        raise InvalidConfiguration(f"{BUSYBOX} is missing", fix="apt-get install busybox-static")
    # The key covers the applet list too: a new applet must give a new cache entry.
    applets = ",".join(BUSYBOX_APPLETS).encode()
    key = hashlib.sha256(_short_digest(BUSYBOX).encode() + applets).hexdigest()[:12]

    def build(dest: Path) -> Path:
        links = {f"bin/{applet}": "/bin/busybox" for applet in BUSYBOX_APPLETS}
        return _single_layer_image(
            dest,
            ref=BUSYBOX_REF,
            files={"bin/busybox": BUSYBOX},
            symlinks=links,
            entrypoint=["/bin/sh"],
        )

    return cached(images_dir() / f"busybox-{key}.tar", build), BUSYBOX_REF
