"""OCI image archives written from plain tar layers, importable without a registry.

The archive is an OCI image layout (index.json, blobs/sha256/...) that also carries a
docker-style manifest.json, so `ctr images import`, `kind load image-archive` and
`docker load` all accept it. Layers are stored uncompressed: their digest is their diff_id.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import InvalidConfiguration

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
CHUNK = 1 << 20


def split_ref(ref: str) -> tuple[str, str, str]:
    """An image reference's repository, tag and digest (the last two "" when it has none).

    Example:
        >>> split_ref("localhost:5000/demo:v2"), split_ref("demo@sha256:ab")
        (('localhost:5000/demo', 'v2', ''), ('demo', '', 'sha256:ab'))
    """
    named, _, digest = ref.partition("@")
    repository, colon, tag = named.rpartition(":")
    if not colon or "/" in tag:  # a registry's port, not a tag
        return named, "", digest
    return repository, tag, digest


def normalize_ref(ref: str) -> str:
    """Spell `ref` the way the CRI looks images up ("busybox:1" -> "docker.io/library/busybox:1").

    Raises:
        InvalidConfiguration: the reference has no tag, or its tag is `latest` (the kubelet
            would try to pull it from a registry, which this machine does not have).
    """
    name, tag, _ = split_ref(ref)
    if not tag:
        raise InvalidConfiguration(
            f"image reference {ref!r} has no tag",
            fix="give an explicit tag, e.g. demo/app:0.1 (untagged means :latest, always pulled)",
        )
    if tag == "latest":
        raise InvalidConfiguration(
            f"image reference {ref!r} uses the tag 'latest', which the kubelet always pulls",
            fix="give a version tag, e.g. demo/app:0.1",
        )
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def file_digest(path: Path) -> tuple[str, int]:
    """The `sha256:...` digest and the size of a file, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return f"sha256:{sha.hexdigest()}", size


def _blob_name(digest: str) -> str:
    return "blobs/sha256/" + digest.removeprefix("sha256:")


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _json_blob(archive: tarfile.TarFile, document: object) -> tuple[str, int]:
    data = json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    _add_bytes(archive, _blob_name(digest), data)
    return digest, len(data)


def write_oci_archive(
    dest: Path,
    *,
    ref: str,
    layers: Sequence[Path],
    entrypoint: Sequence[str],
    cmd: Sequence[str] = (),
    env: Mapping[str, str] = {},
    workdir: str = "/",
    user: str | None = None,
    stop_signal: str | None = None,
) -> Path:
    """Write an image made of `layers` (uncompressed tar files, bottom first) to `dest`.

    Args:
        dest: archive path; written through a temporary file, so it is whole or absent.
        ref: image reference, e.g. "demo/app:0.1" (normalized to "docker.io/demo/app:0.1").
        layers: root filesystem layers as plain tar files.
        entrypoint, cmd, env, workdir, user, stop_signal: the image's run configuration.

    Returns:
        `dest`.

    Raises:
        InvalidConfiguration: a bad reference, no layers, or a layer file that is missing.

    Example:
        >>> write_oci_archive(Path("app.tar"), ref="demo/app:0.1",           # doctest: +SKIP
        ...                   layers=[Path("rootfs.tar")], entrypoint=["/bin/app"])
    """
    full_ref = normalize_ref(ref)
    if not layers:
        raise InvalidConfiguration(f"image {ref}: no layers given", fix="pass at least one tar")
    missing = [str(p) for p in layers if not Path(p).is_file()]
    if missing:
        raise InvalidConfiguration(
            f"image {ref}: layer file(s) not found: {', '.join(missing)}",
            fix="build the root filesystem tar first",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    layer_entries = []
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for layer in layers:
            digest, size = file_digest(Path(layer))
            archive.add(str(layer), arcname=_blob_name(digest), recursive=False)
            layer_entries.append({"mediaType": LAYER_TYPE, "digest": digest, "size": size})
        run_config: dict[str, object] = {
            "Entrypoint": list(entrypoint),
            "Cmd": list(cmd),
            "Env": [f"{k}={v}" for k, v in env.items()]
            or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "WorkingDir": workdir,
        }
        if user is not None:
            run_config["User"] = user
        if stop_signal is not None:
            run_config["StopSignal"] = stop_signal
        config_digest, config_size = _json_blob(
            archive,
            {
                "architecture": "amd64",
                "os": "linux",
                "config": run_config,
                "rootfs": {"type": "layers", "diff_ids": [e["digest"] for e in layer_entries]},
            },
        )
        manifest_digest, manifest_size = _json_blob(
            archive,
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
                "layers": layer_entries,
            },
        )
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST_TYPE,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": full_ref,
                        "org.opencontainers.image.ref.name": full_ref.rpartition(":")[2],
                    },
                }
            ],
        }
        _add_bytes(archive, "index.json", json.dumps(index).encode())
        short_ref = full_ref.removeprefix("docker.io/library/").removeprefix("docker.io/")
        docker_manifest = [
            {
                "Config": _blob_name(config_digest),
                "RepoTags": [short_ref],
                "Layers": [_blob_name(e["digest"]) for e in layer_entries],
            }
        ]
        _add_bytes(archive, "manifest.json", json.dumps(docker_manifest).encode())
    partial.replace(dest)
    return dest


def archive_ref(archive: Path) -> str:
    """The image reference recorded in an archive written by `write_oci_archive` (or docker save).

    Raises:
        InvalidConfiguration: the file is not a readable image archive.
    """
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("index.json")
            if member is not None:
                index = json.load(member)
                for entry in index.get("manifests", []):
                    name = entry.get("annotations", {}).get("io.containerd.image.name")
                    if name:
                        return name
            member = tar.extractfile("manifest.json")
            if member is not None:
                return normalize_ref(json.load(member)[0]["RepoTags"][0])
    except (OSError, tarfile.TarError, KeyError, IndexError, ValueError) as exc:
        raise InvalidConfiguration(
            f"{archive} is not a readable image archive ({exc})",
            fix="write it with harness.images.oci.write_oci_archive or `docker save`",
        ) from None
    raise InvalidConfiguration(
        f"{archive} names no image", fix="write it with harness.images.oci.write_oci_archive"
    )
