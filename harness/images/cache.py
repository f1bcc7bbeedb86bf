"""Built image archives kept under the harness cache, each with a checksum beside it."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

from harness.errors import InvalidConfiguration
from harness.images.oci import file_digest
from harness.paths import cache_dir


def images_dir() -> Path:
    """Where built image archives are cached."""
    return cache_dir() / "images"


def cached(path: Path, build: Callable[[Path], Path]) -> Path:
    """Return `path`, building it with `build(path)` first when it is not cached yet.

    A checksum file written after the build lets a later run tell a whole entry from a
    damaged one.

    Raises:
        InvalidConfiguration: the cached file no longer matches its checksum.
    """
    checksum = path.with_name(path.name + ".sha256")
    if path.is_file() and checksum.is_file():
        expected = checksum.read_text().strip()
        actual, _ = file_digest(path)
        if actual != expected:
            raise InvalidConfiguration(
                f"cache entry {path} is corrupted (checksum {actual[:19]}..., "
                f"expected {expected[:19]}...)",
                fix=f"delete it (rm {path} {checksum}); the next run rebuilds it",
            )
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    build(path)
    checksum.write_text(file_digest(path)[0] + "\n")
    return path


def archive_file(path: Path) -> Path:
    """An image archive file for `path`: the file itself, or an OCI layout folder (as written
    by `skopeo copy ... oci:DIR`, `buildah push ... oci:DIR`) packed into one uncompressed tar,
    cached by the digest of its index, which changes with every image it holds.

    Raises:
        InvalidConfiguration: `path` is neither a file nor a folder with index.json.
    """
    if path.is_file():
        return path
    index = path / "index.json"
    if not index.is_file():
        raise InvalidConfiguration(
            f"image archive {path} is neither a file nor an OCI layout folder (no index.json)",
            fix="give a `docker save` tar, an OCI archive tar or an OCI layout folder",
        )
    key = file_digest(index)[0].removeprefix("sha256:")[:16]

    def pack(dest: Path) -> Path:
        partial = dest.with_name(dest.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            for member in sorted(path.rglob("*")):
                tar.add(member, arcname=str(member.relative_to(path)), recursive=False)
        return partial.replace(dest)

    return cached(images_dir() / "layouts" / f"{path.name}-{key}.tar", pack)
