"""Image layers made of a few host files: static binaries, their symlinks, a passwd file."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

from harness.errors import InvalidConfiguration

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def files_layer(
    dest: Path,
    *,
    files: Mapping[str, Path],
    symlinks: Mapping[str, str] = {},
    dirs: tuple[str, ...] = ("tmp", "etc", "root"),
) -> Path:
    """Write an uncompressed layer tar holding `files` (image path -> host file) and `symlinks`.

    Timestamps and owners are fixed so the same inputs give the same layer digest.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name, text in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, host_path in sorted(files.items()):
            if not host_path.is_file():
                raise InvalidConfiguration(
                    f"{host_path} (for {name} in {dest.name}) does not exist",
                    fix="build or install it first",
                )
            info = tar.gettarinfo(str(host_path), arcname=name.lstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with host_path.open("rb") as f:
                tar.addfile(info, f)
        for name, target in sorted(symlinks.items()):
            info = tarfile.TarInfo(name.lstrip("/"))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    partial.replace(dest)
    return dest
