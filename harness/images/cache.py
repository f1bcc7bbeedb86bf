"""Built image archives kept under the harness cache, each with a checksum beside it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.cluster.provider import CACHE_DIR
from harness.errors import InvalidConfiguration
from harness.images.oci import file_digest

IMAGES_DIR = CACHE_DIR / "images"


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
