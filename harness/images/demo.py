"""The demo service's images: a Debian root filesystem with python3, plus a layer with the app.

Every version shares the same code; only the image's DEMO_VERSION differs, which is what
/version reports, so a rollout from v1 to v2 can be followed request by request. A version
whose tag ends in `-broken` (e.g. v2-broken) answers half of its requests 500 while its
probes pass: the broken next release the rollout scenarios must catch.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness.errors import InvalidConfiguration
from harness.images.cache import cached, images_dir
from harness.images.layers import files_layer
from harness.images.oci import file_digest, write_oci_archive
from harness.images.rootfs import debian_rootfs
from harness.progress import step
from harness.suite import DEMO_APP

APP_SOURCE = DEMO_APP
# "localhost/" keeps a missing image from being looked up on a public registry: the pull
# fails at once on this machine instead.
DEMO_REPOSITORY = "localhost/kube-harness/demo-service"
DEMO_VERSIONS = ("v1", "v2")
BROKEN_SUFFIX = "-broken"
BROKEN_ERROR_RATE = "0.5"
# python3-minimal lacks http.server and json; python3 brings them.
ROOTFS_PACKAGES = ("python3",)
ENTRYPOINT = ("python3", "/app/app.py")
DEMO_USER = "10001:10001"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    # The root filesystem is read-only in the pod: no .pyc files, no buffered logs.
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
}


def demo_image_ref(version: str) -> str:
    """The image reference of one demo version, e.g. localhost/kube-harness/demo-service:v1."""
    return f"{DEMO_REPOSITORY}:{version}"


def build_demo_images(versions: Sequence[str] = DEMO_VERSIONS) -> list[Path]:
    """Build (or reuse from the cache) one OCI archive per demo version.

    The Debian root filesystem is built once with mmdebstrap and shared; an archive is
    rebuilt only when the app, the package list or the image recipe changes.

    Returns:
        The archives, in the order of `versions`; load them with `ClusterProvider.load_image`.

    Raises:
        InvalidConfiguration: no versions, a version that is not a valid tag, or mmdebstrap
            missing.
        CommandFailed: mmdebstrap failed.

    Example:
        >>> for archive in build_demo_images(["v1", "v2"]):   # doctest: +SKIP
        ...     provider.load_image(archive)
    """
    if not versions:
        raise InvalidConfiguration("no demo versions to build", fix="ask for e.g. v1 and v2")
    for version in versions:
        if not version or not version.replace(".", "").replace("-", "").isalnum():
            raise InvalidConfiguration(
                f"demo version {version!r} is not a valid image tag",
                fix="use letters, digits, '.' and '-', e.g. v2",
            )
    rootfs = debian_rootfs(
        images_dir() / "rootfs" / "bookworm-python3.tar", include=ROOTFS_PACKAGES
    )
    return [_demo_archive(version, rootfs) for version in versions]


def _image_env(version: str) -> dict[str, str]:
    broken = {"ERROR_RATE": BROKEN_ERROR_RATE} if version.endswith(BROKEN_SUFFIX) else {}
    return BASE_ENV | {"DEMO_VERSION": version} | broken


def _recipe_key(version: str) -> str:
    """A short hash of everything that goes into an archive besides the shared rootfs."""
    recipe = {
        "app": file_digest(APP_SOURCE)[0],
        "packages": ROOTFS_PACKAGES,
        "entrypoint": ENTRYPOINT,
        "env": _image_env(version),
        "user": DEMO_USER,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _demo_archive(version: str, rootfs: Path) -> Path:
    ref = demo_image_ref(version)

    def build(dest: Path) -> Path:
        with step(f"writing image {ref}"), tempfile.TemporaryDirectory(prefix="kh-demo-") as tmp:
            app_layer = files_layer(
                Path(tmp) / "app.tar", files={"app/app.py": APP_SOURCE}, dirs=("app", "tmp")
            )
            return write_oci_archive(
                dest,
                ref=ref,
                layers=[rootfs, app_layer],
                entrypoint=ENTRYPOINT,
                env=_image_env(version),
                workdir="/app",
                user=DEMO_USER,
            )

    return cached(images_dir() / f"demo-service-{version}-{_recipe_key(version)}.tar", build)
