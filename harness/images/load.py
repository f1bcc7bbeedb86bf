"""The load image: Locust with the harness's recorder and locustfiles, for load from a cluster.

Debian's python3 root filesystem (the one the demo images share) plus one layer with exactly
what runs on the host: the installed distributions Locust needs, copied from this venv (the
same versions, C extensions included: Debian bookworm's python3 is 3.11, like the harness's),
the harness modules the Locust processes import, and the built-in locustfiles. A run's own
locustfile reaches the pods separately (a ConfigMap), so it never changes the image.

The archive is cached by the content of that layer's inputs.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from packaging.markers import Marker

from harness.errors import InvalidConfiguration
from harness.images.cache import cached, images_dir
from harness.images.demo import BASE_ENV, DEMO_USER
from harness.images.layers import files_layer
from harness.images.oci import file_digest, write_oci_archive
from harness.images.rootfs import debian_rootfs
from harness.progress import step
from harness.suite import LOADTESTS

LOAD_REPOSITORY = "localhost/kube-harness/locust"
SITE = "opt/locust/site"  # the distributions, as in a venv's site-packages
HARNESS = "opt/harness"  # the harness modules and loadtests/, as in a checkout
IMAGE_PYTHON = (3, 11)  # Debian bookworm's python3: the venv's C extensions must match it
# What the Locust processes import of the harness (harness.load's __init__ imports the
# runner, which needs these); checked by importing them in the image.
HARNESS_MODULES = (
    "__init__.py",
    "errors.py",
    "progress.py",
    "wait.py",
    "commands.py",
    "suite.py",
    "user_files.py",
)
HARNESS_ROOT = Path(__file__).resolve().parents[1]
# greenlet's compiled module links libstdc++ (manylinux wheels leave it to the system);
# iptables sets each pod's egress rule (harness.load.cluster).
ROOTFS_PACKAGES = ("python3", "libstdc++6", "iptables")
ENTRYPOINT = ("python3", f"/{HARNESS}/harness/load/_locust_entry.py")
# Deleting the pod then asks Locust to stop as a finished shape does (harness.load.cluster).
STOP_SIGNAL = "SIGUSR1"
ENV = {"PYTHONPATH": f"/{SITE}:/{HARNESS}"}


def load_image_ref() -> str:
    """The reference of the load image built from this venv and these harness files."""
    return f"{LOAD_REPOSITORY}:{_content_key()}"


def build_load_image() -> tuple[str, Path]:
    """Build (or reuse from the cache) the load image: (its reference, its OCI archive).

    Raises:
        InvalidConfiguration: the harness runs on a Python other than the image's (3.11),
            Locust is not installed, or mmdebstrap is missing.
        CommandFailed: mmdebstrap failed.
    """
    if sys.version_info[:2] != IMAGE_PYTHON:
        raise InvalidConfiguration(
            f"the load image runs Debian bookworm's Python "
            f"{IMAGE_PYTHON[0]}.{IMAGE_PYTHON[1]}, but the harness runs on "
            f"Python {sys.version_info.major}.{sys.version_info.minor}: the venv's compiled "
            "modules (gevent, pyzmq) would not load there",
            fix="run the harness from a Python 3.11 venv (what `make deps` makes), or send "
            "load from the host (--load-placement host)",
        )
    ref = load_image_ref()
    rootfs = debian_rootfs(
        images_dir() / "rootfs" / "bookworm-python3-locust.tar", include=ROOTFS_PACKAGES
    )

    def build(dest: Path) -> Path:
        with step(f"writing image {ref}"), tempfile.TemporaryDirectory(prefix="kh-load-") as tmp:
            layer = files_layer(
                Path(tmp) / "locust.tar",
                files=dict(layer_files()),
                dirs=("opt", "tmp", "report"),
            )
            return write_oci_archive(
                dest,
                ref=ref,
                layers=[rootfs, layer],
                entrypoint=ENTRYPOINT,
                env=BASE_ENV | ENV,
                workdir="/report",
                user=DEMO_USER,
                stop_signal=STOP_SIGNAL,
            )

    return ref, cached(images_dir() / f"locust-{ref.rsplit(':', 1)[1]}.tar", build)


def locust_distributions() -> list[importlib.metadata.Distribution]:
    """Locust (and PyYAML: harness.load reads SLO files) with everything they require on this
    platform, as installed in this venv."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = ["locust", "PyYAML"]
    while todo:
        name = _normalize(todo.pop())
        if name in found:
            continue
        try:
            found[name] = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise InvalidConfiguration(
                f"{name} (needed by Locust) is not installed in this venv",
                fix="reinstall the harness's dependencies (`make deps`)",
            ) from None
        for requirement in found[name].requires or []:
            spec, _, marker = requirement.partition(";")
            if marker and not Marker(marker).evaluate({"extra": ""}):
                continue
            todo.append(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0])
    return sorted(found.values(), key=lambda d: _normalize(d.metadata["Name"]))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def layer_files() -> Iterator[tuple[str, Path]]:
    """(path in the image, file on this machine) of everything the layer holds."""
    for dist in locust_distributions():
        for file in dist.files or []:
            local = Path(str(dist.locate_file(file))).resolve()
            if "__pycache__" in file.parts or file.parts[0] == ".." or not local.is_file():
                continue  # bytecode is not needed; scripts installed outside site-packages
            yield f"{SITE}/{file}", local
    for module in HARNESS_MODULES:
        yield f"{HARNESS}/harness/{module}", HARNESS_ROOT / module
    for module in sorted((HARNESS_ROOT / "load").glob("*.py")):
        yield f"{HARNESS}/harness/load/{module.name}", module
    for locustfile in sorted(LOADTESTS.glob("*.py")):
        yield f"{HARNESS}/loadtests/{locustfile.name}", locustfile


def _content_key() -> str:
    """A short hash of the layer's inputs: distribution versions and the harness's files."""
    recipe = {
        "distributions": [f"{d.metadata['Name']}=={d.version}" for d in locust_distributions()],
        "files": {
            name: file_digest(path)[0] for name, path in layer_files() if not name.startswith(SITE)
        },
        "packages": ROOTFS_PACKAGES,
        "entrypoint": ENTRYPOINT,
        "env": BASE_ENV | ENV,
        "user": DEMO_USER,
        "stop_signal": STOP_SIGNAL,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
