"""Pinned component binaries for the `local` provider: found, cached, or built from source.

Every version comes from `versions.yaml`. Per binary, the first of these wins:

1. a binary in one of `search_dirs`, then on PATH, whose version output shows the pinned version;
2. the cache, `<cache>/bin/<version>/<name>`, whose stamp file (version, build settings, size
   and sha256, written after a successful build) still matches, so a truncated or corrupted
   binary, or one built with other settings, is noticed and rebuilt;
3. a `go build` from the Go module proxy, in a throw-away wrapper module that pins the modules a
   release replaces with local paths (Kubernetes' staging modules, etcd's sibling modules).

Debian-provided components (containerd, runc, the CNI plugins) are never built: the installed
package must be at least the pinned minimum.

The cache root is `~/.cache/kube-harness`, or `$HARNESS_CACHE_DIR` when set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from harness.commands import run
from harness.errors import CommandFailed, HarnessError, InvalidConfiguration
from harness.gopackages import program_name
from harness.paths import cache_dir
from harness.progress import say, step
from harness.wait import Pending, wait_for

VERSIONS_FILE = Path(__file__).with_name("versions.yaml")
DEFAULT_GOPROXY = "https://proxy.golang.org"

STILL_BUILDING_EVERY_S = 30.0
BUILD_TIMEOUT_S = 2 * 3600.0
VERSION_PROBE_TIMEOUT_S = 15.0
LOCK_TIMEOUT_S = 3 * 3600.0
BUILD_LOG_TAIL_LINES = 25

GO_INSTALL_FIX = (
    "install Go from https://go.dev/dl/ (e.g. unpack to /usr/local/go) and put its bin folder "
    "on PATH; or put binaries of the pinned versions on PATH or in a folder given as search_dirs"
)


class GoToolchainMissing(InvalidConfiguration):
    """A component must be built but no usable Go toolchain is on PATH."""


class PinnedVersionNotFound(InvalidConfiguration):
    """A version named in versions.yaml does not exist on the Go module proxy."""


class DebianPackageMissing(InvalidConfiguration):
    """A Debian package the local provider needs is missing or older than the pinned minimum."""


class BuildFailed(HarnessError):
    """`go build` (or fetching what it needs) failed; the message holds the tail of its output."""


@dataclass(frozen=True)
class GoBinary:
    """One binary built from a Go source: its main package and how it prints its version."""

    name: str
    package: str
    version_args: tuple[str, ...]


@dataclass(frozen=True)
class GoSource:
    """Go modules released together at one version, and the binaries built from them."""

    name: str
    modules: tuple[str, ...]
    version: str
    local_replace_version: str
    version_ldflags: tuple[str, ...]
    binaries: tuple[GoBinary, ...]
    nosumdb: tuple[str, ...] = ()
    cgo: bool = False

    @property
    def version_fields(self) -> dict[str, str]:
        """{version} {major} {minor} {patch} for the templates in versions.yaml."""
        major, minor, patch = [*re.findall(r"\d+", self.version), "0", "0", "0"][:3]
        return {"version": self.version, "major": major, "minor": minor, "patch": patch}

    @property
    def replacement_version(self) -> str:
        """The version that modules replaced with local paths are pinned to."""
        return self.local_replace_version.format(**self.version_fields)


@dataclass(frozen=True)
class DebianPackage:
    """A component taken from Debian: the package, its minimum version and its binaries."""

    name: str
    minimum: str
    binaries: tuple[str, ...]


@dataclass(frozen=True)
class Versions:
    """Everything versions.yaml pins; see that file for what each field means."""

    go_sources: tuple[GoSource, ...]
    debian_packages: tuple[DebianPackage, ...]

    @property
    def component_names(self) -> tuple[str, ...]:
        """Every binary name, built ones first, in the order they are built."""
        built = (b.name for s in self.go_sources for b in s.binaries)
        packaged = (name for p in self.debian_packages for name in p.binaries)
        return (*built, *packaged)

    def with_version(self, source_name: str, version: str) -> Versions:
        """These versions, with Go source `source_name` moved to `version` (e.g. "v1.33.2")."""
        moved = dataclasses.replace(self.go_source(source_name), version=version)
        return dataclasses.replace(
            self, go_sources=tuple(moved if s.name == source_name else s for s in self.go_sources)
        )

    def go_source(self, name: str) -> GoSource:
        """The Go source named `name` (e.g. "kubernetes", "kind")."""
        for source in self.go_sources:
            if source.name == name:
                return source
        raise InvalidConfiguration(
            f"versions.yaml has no Go source {name!r}",
            fix=f"use one of: {', '.join(s.name for s in self.go_sources)}",
        )


@dataclass(frozen=True)
class Resolved:
    """Where a component binary is and how it was found ("PATH", "cache", "built", ...)."""

    path: Path
    origin: str


@dataclass(frozen=True)
class GoMod:
    """The parts of a go.mod file the wrapper module needs."""

    go_version: str
    requires: frozenset[str]
    local_replaces: frozenset[str]
    version_replaces: tuple[str, ...] = ()  # "old [v] => new v", as written


def load_versions(path: Path = VERSIONS_FILE) -> Versions:
    """Read the pinned versions.

    Raises:
        InvalidConfiguration: the file is missing a field or is not valid YAML.
    """
    try:
        data = yaml.safe_load(path.read_text())
        sources = tuple(
            GoSource(
                name=name,
                modules=tuple(spec["modules"]),
                version=spec["version"],
                local_replace_version=spec.get("local_replace_version", "{version}"),
                version_ldflags=tuple(spec.get("version_ldflags", ())),
                binaries=tuple(
                    GoBinary(binary, b["package"], tuple(b["version_args"]))
                    for binary, b in (spec.get("binaries") or {}).items()
                ),
                nosumdb=tuple(spec.get("nosumdb", ())),
                cgo=bool(spec.get("cgo", False)),
            )
            for name, spec in data["go_sources"].items()
        )
        packages = tuple(
            DebianPackage(name, str(spec["minimum"]), tuple(spec["binaries"]))
            for name, spec in data["debian_packages"].items()
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidConfiguration(
            f"{path}: not a valid versions file ({type(exc).__name__}: {exc})",
            fix="compare it with harness/cluster/versions.yaml in the kube-harness repository",
        ) from None
    return Versions(sources, packages)


def ensure_binaries(
    names: Iterable[str] | None = None,
    *,
    search_dirs: Sequence[Path] = (),
    versions: Versions | None = None,
) -> dict[str, Path]:
    """Return the path of each component binary, building the missing ones.

    Args:
        names: components to provide (binary names, e.g. "kubelet", "etcd", "runc");
            default: every component in versions.yaml.
        search_dirs: folders searched (before PATH) for binaries of the pinned versions.
        versions: pinned versions; default: `load_versions()`.

    Returns:
        Binary name -> absolute path.

    Raises:
        InvalidConfiguration: an unknown component name.
        GoToolchainMissing: something must be built and `go` is not on PATH.
        PinnedVersionNotFound: a pinned version is not on the module proxy (before any build).
        DebianPackageMissing: a Debian package is missing or too old.
        BuildFailed: `go build` failed.

    Example:
        >>> paths = ensure_binaries(["kubectl"])
        >>> paths["kubectl"].name
        'kubectl'
    """
    found = resolve_binaries(names, search_dirs=search_dirs, versions=versions)
    return {name: resolved.path for name, resolved in found.items()}


def build_all(names: Iterable[str] | None = None) -> dict[str, Path]:
    """`harness cluster build`: provide every component and print where each came from."""
    found = resolve_binaries(names)
    width = max(map(len, found), default=0)
    for name, resolved in found.items():
        print(f"{name:<{width}}  {resolved.path}  ({resolved.origin})")
    return {name: resolved.path for name, resolved in found.items()}


def source_dir(name: str, *, versions: Versions | None = None) -> Path:
    """The source folder of Go source `name`'s first module at its pinned version.

    Downloaded through the module proxy when it is not in the cache; the kind node image
    follows the recipes in kind's.
    """
    source = (versions or load_versions()).go_source(name)
    return _GoBuilder(cache_dir())._fetch(source).source_dirs[source.modules[0]]


def module_source(module: str, version: str) -> Path:
    """The source folder of Go module `module` at `version`, downloaded through the module
    proxy into the cache once: what a program ships beside its code (Argo Rollouts' install
    manifests)."""
    source = GoSource(module.rsplit("/", 1)[-1], (module,), version, version, (), ())
    return _GoBuilder(cache_dir())._fetch(source).source_dirs[module]


def resolve_binaries(
    names: Iterable[str] | None = None,
    *,
    search_dirs: Sequence[Path] = (),
    versions: Versions | None = None,
) -> dict[str, Resolved]:
    """Like `ensure_binaries`, but also says where each binary came from."""
    versions = versions or load_versions()
    wanted = _check_names(versions, names)
    found: dict[str, Resolved] = {}
    for package in versions.debian_packages:
        if any(name in wanted for name in package.binaries):
            found.update(_from_debian(package, wanted))
    to_build: list[tuple[GoSource, list[GoBinary]]] = []
    cache = cache_dir()
    for source in versions.go_sources:
        missing = []
        for binary in source.binaries:
            if binary.name not in wanted:
                continue
            hit = _find_installed(binary, source.version, search_dirs) or _from_cache(
                cache, source, binary
            )
            if hit:
                found[binary.name] = hit
            else:
                missing.append(binary)
        if missing:
            to_build.append((source, missing))
    if to_build:
        found.update(_GoBuilder(cache).build(to_build))
    return {name: found[name] for name in wanted}


def _check_names(versions: Versions, names: Iterable[str] | None) -> list[str]:
    known = versions.component_names
    if names is None:
        return list(known)
    wanted = list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InvalidConfiguration(
            f"unknown component(s): {', '.join(unknown)}",
            fix=f"choose from: {', '.join(known)}",
        )
    return wanted


# --- binaries already installed -------------------------------------------------------------


def version_matches(output: str, version: str) -> bool:
    """Whether a program's version output shows exactly `version` ("v1.34.4" or "1.34.4").

    >>> version_matches("Kubernetes v1.34.4", "v1.34.4"), version_matches("v1.34.40", "v1.34.4")
    (True, False)
    """
    bare = re.escape(version.removeprefix("v"))
    return re.search(rf"(?<![\w.])v?{bare}(?![\w.+-])", output) is not None


def _find_installed(binary: GoBinary, version: str, search_dirs: Sequence[Path]) -> Resolved | None:
    for folder in search_dirs:
        path = Path(folder) / binary.name
        if _is_executable(path):
            shown = _version_output(path, binary.version_args)
            if version_matches(shown, version):
                return Resolved(path.resolve(), f"found in {folder}")
            # The user pointed at this folder: say why its binary is not used.
            first_line = next(iter(shown.strip().splitlines()), "no version output")
            say(f"not using {path}: {first_line!r} is not {binary.name} {version}")
    # Other versions on PATH are common (Debian's etcd, a distribution kubectl): skip quietly.
    on_path = shutil.which(binary.name)
    if on_path and version_matches(_version_output(Path(on_path), binary.version_args), version):
        return Resolved(Path(on_path).resolve(), "found on PATH")
    return None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_output(path: Path, args: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            [str(path), *args],
            capture_output=True,
            text=True,
            timeout=VERSION_PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


def _from_debian(package: DebianPackage, wanted: Sequence[str]) -> dict[str, Resolved]:
    fix = f"apt-get install -y {package.name}  (version {package.minimum} or newer)"
    try:
        status, _, installed = run(
            ["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", package.name]
        ).partition(" ")
        listed = run(["dpkg-query", "-L", package.name]).splitlines()
    except CommandFailed:
        status = "unknown"
    if status != "installed":
        raise DebianPackageMissing(f"Debian package {package.name} is not installed", fix=fix)
    try:
        run(["dpkg", "--compare-versions", installed, "ge", package.minimum])
    except CommandFailed:
        raise DebianPackageMissing(
            f"Debian package {package.name} is {installed}, older than {package.minimum}", fix=fix
        ) from None
    found = {}
    for name in package.binaries:
        if name not in wanted:
            continue
        paths = [Path(p) for p in listed if Path(p).name == name and _is_executable(Path(p))]
        if not paths:
            raise DebianPackageMissing(
                f"Debian package {package.name} {installed} has no executable {name!r}",
                fix=f"reinstall it: apt-get install --reinstall -y {package.name}",
            )
        found[name] = Resolved(paths[0], f"Debian {package.name} {installed}")
    return found


# --- the cache --------------------------------------------------------------------------------


def cached_path(cache: Path, name: str, version: str) -> Path:
    """Where the cache keeps binary `name` at `version`."""
    return cache / "bin" / version / name


def _stamp_path(binary: Path) -> Path:
    return binary.with_name(binary.name + ".stamp")


def build_recipe(source: GoSource, binary: GoBinary) -> str:
    """A fingerprint of how versions.yaml says to build `binary`; a change means rebuild."""
    recipe = [source.modules, source.replacement_version, source.version_ldflags, binary.package]
    if source.cgo:
        recipe.append("cgo-static")
    return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()[:16]


def write_stamp(binary: Path, version: str, recipe: str) -> None:
    """Record a freshly built binary's version, recipe, size and sha256 next to it (atomically)."""
    stamp = {
        "name": binary.name,
        "version": version,
        "recipe": recipe,
        "size": binary.stat().st_size,
        "sha256": _sha256(binary),
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    partial = binary.with_name(f".{binary.name}.stamp.partial-{os.getpid()}")
    partial.write_text(json.dumps(stamp, indent=2) + "\n")
    os.replace(partial, _stamp_path(binary))


def stamp_problem(binary: Path, version: str, recipe: str) -> str | None:
    """Why a cached binary cannot be trusted, or None when its stamp matches it."""
    if not binary.exists():
        return "not built yet"
    try:
        stamp = json.loads(_stamp_path(binary).read_text())
    except FileNotFoundError:
        return "no stamp file: its build never finished"
    except (OSError, ValueError) as exc:
        return f"unreadable stamp file ({exc})"
    if not isinstance(stamp, dict):
        return "stamp file holds no record"
    if stamp.get("version") != version:
        return f"stamp is for version {stamp.get('version')}"
    if stamp.get("recipe") != recipe:
        return "built with other settings than versions.yaml now names"
    size = binary.stat().st_size
    if stamp.get("size") != size:
        return f"size {size} bytes, {stamp.get('size')} when built (truncated?)"
    if stamp.get("sha256") != _sha256(binary):
        return "sha256 differs from the one recorded when built (corrupted)"
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _from_cache(cache: Path, source: GoSource, binary: GoBinary) -> Resolved | None:
    path = cached_path(cache, binary.name, source.version)
    problem = stamp_problem(path, source.version, build_recipe(source, binary))
    if problem is None:
        return Resolved(path, "cache")
    if path.exists():
        # Left in place until a rebuild replaces it: a running cluster may still use it, and
        # without a matching stamp it is never handed out.
        say(
            f"cached {binary.name} {source.version} at {path} is not usable ({problem}); rebuilding"
        )
    return None


# --- building ---------------------------------------------------------------------------------


def parse_go_mod(text: str) -> GoMod:
    """Read the go line, required modules and locally replaced modules of a go.mod file."""
    go_version = ""
    requires: set[str] = set()
    local_replaces: set[str] = set()
    version_replaces: list[str] = []
    block = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block is not None:
            if line == ")":
                block = None
                continue
            directive, entry = block, line
        elif line.endswith("("):
            block = line[:-1].strip()
            continue
        else:
            directive, _, entry = line.partition(" ")
        if directive == "go":
            go_version = entry.strip()
        elif directive == "require":
            requires.add(entry.split()[0])
        elif directive == "replace":
            replaced, _, target = entry.partition("=>")
            if target.strip().startswith(("./", "../")):
                local_replaces.add(replaced.split()[0])
            else:
                version_replaces.append(" ".join(entry.split()))
    return GoMod(
        go_version, frozenset(requires), frozenset(local_replaces), tuple(version_replaces)
    )


def render_wrapper_go_mod(source: GoSource, go_mods: Mapping[str, GoMod]) -> str:
    """The go.mod of a wrapper module that builds `source` at its pinned version.

    Each module of `source` is required at `source.version`. Modules that those go.mod files
    require but replace with a local path (which `go install module@version` refuses) are
    required and replaced at their published `source.replacement_version`, as `go mod tidy`
    would record them (so builds share compiled packages with other wrappers of that release).
    Local replaces of modules that are not required (etcd's `FORBIDDEN_DEPENDENCY` markers)
    are left out.
    """
    go_line = max((m.go_version for m in go_mods.values()), key=_version_tuple)
    pinned = sorted(
        {name for m in go_mods.values() for name in m.local_replaces & m.requires}
        - set(source.modules)
    )
    lines = [f"module kubeharness.local/build/{source.name}", "", f"go {go_line}", "", "require ("]
    lines += [f"\t{module} {source.version}" for module in source.modules]
    lines += [f"\t{name} {source.replacement_version}" for name in pinned]
    lines.append(")")
    if pinned:
        lines += ["", "replace ("]
        lines += [f"\t{name} => {name} {source.replacement_version}" for name in pinned]
        lines.append(")")
    return "\n".join(lines) + "\n"


def version_ldflags(source: GoSource, commit: str, date: str) -> list[str]:
    """The `-X` linker assignments that stamp `source`'s version into its binaries."""
    fields = source.version_fields | {"commit": commit, "date": date}
    return [f"-X {assignment.format(**fields)}" for assignment in source.version_ldflags]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@dataclass(frozen=True)
class _Fetched:
    """What the module proxy says about a source's modules at the pinned version."""

    go_mods: dict[str, GoMod]
    commit: str
    date: str
    source_dirs: dict[str, Path]


class _GoBuilder:
    """Builds missing binaries with the local Go toolchain into the cache."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        go = shutil.which("go")
        if go is None:
            raise GoToolchainMissing(
                "no Go toolchain (`go`) on PATH to build from", fix=GO_INSTALL_FIX
            )
        self.go = go
        self.go_version = run(
            [go, "env", "GOVERSION"], env=self._go_env(), fix=GO_INSTALL_FIX
        ).strip()

    def _go_env(self, nosumdb: Sequence[str] = ()) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            GOMODCACHE=str(self.cache / "go" / "mod"),
            GOCACHE=str(self.cache / "go" / "build"),
            GOTOOLCHAIN="local",
            GOFLAGS="-mod=mod",
            CGO_ENABLED="0",
            # No "direct" fallback: without GitHub access it only turns a missing version
            # into a long wait for git.
            GOPROXY=os.environ.get("GOPROXY", DEFAULT_GOPROXY),
            GONOSUMDB=",".join(filter(None, [os.environ.get("GONOSUMDB", ""), *nosumdb])),
        )
        return env

    def build(self, work: Sequence[tuple[GoSource, Sequence[GoBinary]]]) -> dict[str, Resolved]:
        """Check every pinned version first (seconds), then build, one binary at a time."""
        fetched = {source.name: self._fetch(source) for source, _ in work}
        built = {}
        with self._build_lock():
            for source, binaries in work:
                facts = fetched[source.name]
                with tempfile.TemporaryDirectory(
                    prefix=f"{source.name}-", dir=self._wrappers_dir()
                ) as wrapper:
                    (Path(wrapper) / "go.mod").write_text(
                        render_wrapper_go_mod(source, facts.go_mods)
                    )
                    for binary in binaries:
                        target = cached_path(self.cache, binary.name, source.version)
                        # A build that held the lock before us may have made it meanwhile.
                        recipe = build_recipe(source, binary)
                        if stamp_problem(target, source.version, recipe) is None:
                            built[binary.name] = Resolved(target, "cache")
                            continue
                        self._build_binary(Path(wrapper), source, binary, facts, target)
                        built[binary.name] = Resolved(target, "built")
        return built

    def _wrappers_dir(self) -> Path:
        wrappers = self.cache / "wrappers"
        wrappers.mkdir(parents=True, exist_ok=True)
        return wrappers

    def _fetch(self, source: GoSource) -> _Fetched:
        targets = [f"{module}@{source.version}" for module in source.modules]
        # Not commands.run: `go mod download -json` reports each module's error in its JSON
        # output and exits non-zero, and those errors are what the user needs to see.
        done = subprocess.run(
            [self.go, "mod", "download", "-json", *targets],
            env=self._go_env(source.nosumdb),
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            check=False,
        )
        records = list(_json_stream(done.stdout))
        for record in records:
            if record.get("Error"):
                raise _download_error(record["Path"], source.version, record["Error"])
        if done.returncode != 0 or len(records) != len(targets):
            raise BuildFailed(
                f"go mod download {' '.join(targets)} failed: {done.stderr.strip()[-2000:]}",
                fix="check that the module proxy (GOPROXY) is reachable",
            )
        go_mods = {r["Path"]: parse_go_mod(Path(r["GoMod"]).read_text()) for r in records}
        for module, go_mod in go_mods.items():
            if _version_tuple(go_mod.go_version) > _version_tuple(self.go_version):
                raise GoToolchainMissing(
                    f"{module}@{source.version} needs Go {go_mod.go_version}; "
                    f"the Go on PATH is {self.go_version}",
                    fix=f"install Go {go_mod.go_version} or newer ({GO_INSTALL_FIX})",
                )
        infos = [json.loads(Path(r["Info"]).read_text()) for r in records]
        # The proxy knows the commit of some modules of a release only (etcd's server/v3: none).
        commit = next((i["Origin"]["Hash"] for i in infos if "Hash" in i.get("Origin", {})), "")
        dirs = {r["Path"]: Path(r["Dir"]) for r in records}
        return _Fetched(go_mods, commit, infos[0].get("Time", ""), dirs)

    @contextlib.contextmanager
    def _build_lock(self) -> Iterator[None]:
        """Let one build run at a time on this machine (builds take most of its CPU)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        with (self.cache / "build.lock").open("w") as lock:

            def acquired() -> bool | Pending:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return Pending("another kube-harness build holds the lock")
                return True

            if acquired() is not True:
                say(f"waiting for another kube-harness build to finish ({self.cache}/build.lock)")
                wait_for(acquired, what="the build lock", timeout=LOCK_TIMEOUT_S, interval=2.0)
            yield

    def _build_binary(
        self,
        wrapper: Path,
        source: GoSource,
        binary: GoBinary,
        fetched: _Fetched,
        target: Path,
        recipe: str | None = None,
    ) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{binary.name}.partial-{os.getpid()}")
        flags = ["-s", "-w", *version_ldflags(source, fetched.commit, fetched.date)]
        env = self._go_env(source.nosumdb)
        tags = []
        if source.cgo:
            # Still one static binary for any image: glibc linked in, Go's own resolver.
            flags += ["-linkmode", "external", "-extldflags", "-static"]
            tags = ["-tags", "netgo,osusergo"]
            env["CGO_ENABLED"] = "1"
        argv = [self.go, "build", "-trimpath", *tags, "-ldflags", " ".join(flags)]
        argv += ["-o", str(partial)]
        try:
            exit_code, tail = self._run_go(
                [*argv, binary.package],
                cwd=wrapper,
                env=env,
                what=binary.name,
                version=source.version,
            )
            if exit_code != 0:
                if any("sum.golang.org/lookup" in line for line in tail):
                    fix = (
                        "a module above has no checksum database record; if you trust the "
                        "module proxy for it, add it to the nosumdb list of "
                        f"{source.name} in {VERSIONS_FILE}"
                    )
                else:
                    fix = (
                        f"check the version in {VERSIONS_FILE} and that {self.go_version} "
                        "can build it"
                    )
                raise _build_failure(f"go build {binary.package}@{source.version}", exit_code,
                                     tail, fix)  # fmt: skip
            os.replace(partial, target)
            write_stamp(target, source.version, recipe or build_recipe(source, binary))
        finally:
            partial.unlink(missing_ok=True)

    def install(self, package: str, version: str, target: Path) -> None:
        """`go install package@version` (static, trimmed) into `target`, stamped."""
        target.parent.mkdir(parents=True, exist_ok=True)
        env = self._go_env()
        env["GOFLAGS"] = ""  # `-mod=mod` is refused for package@version installs
        with tempfile.TemporaryDirectory(prefix="gobin-", dir=target.parent) as gobin:
            env["GOBIN"] = gobin
            argv = [self.go, "install", "-trimpath", "-ldflags", "-s -w", f"{package}@{version}"]
            exit_code, tail = self._run_go(
                argv, cwd=Path(gobin), env=env, what=target.name, version=version
            )
            said = " ".join(" ".join(tail).split())  # go wraps its messages over lines
            refusal = next((r for t, r in GO_INSTALL_REFUSALS.items() if t in said), "")
            if exit_code != 0 and refusal:
                say(f"go install refuses {package}@{version} ({refusal}); "
                    "building it through a wrapper module")  # fmt: skip
                self._build_program_in_wrapper(package, version, target)
                return
            if exit_code != 0:
                raise _build_failure(
                    f"go install {package}@{version}",
                    exit_code,
                    tail,
                    f"check that {package} is a main package of a module the proxy serves at "
                    f"{version}, and that {self.go_version} can build it",
                )
            os.replace(Path(gobin) / target.name, target)
        write_stamp(target, version, go_program_recipe(package))

    def _build_program_in_wrapper(self, package: str, version: str, target: Path) -> None:
        """Build main package `package` at `version` as a dependency of a wrapper module,
        with the versions and checksums its own module records (its go.mod and go.sum)."""
        module = self._module_of(package, version)
        source = GoSource(target.name, (module,), version, version, (), ())
        fetched = self._fetch(source)
        with tempfile.TemporaryDirectory(
            prefix=f"{target.name}-", dir=self._wrappers_dir()
        ) as wrapper:
            go_mod = render_wrapper_go_mod(source, fetched.go_mods)
            replaces = fetched.go_mods[module].version_replaces
            if replaces:  # the module's own pins, which apply only to a main module
                go_mod += "\nreplace (\n" + "".join(f"\t{r}\n" for r in replaces) + ")\n"
            (Path(wrapper) / "go.mod").write_text(go_mod)
            sums = fetched.source_dirs[module] / "go.sum"
            if sums.is_file():
                shutil.copyfile(sums, Path(wrapper) / "go.sum")
            binary = GoBinary(target.name, package, ())
            self._build_binary(
                Path(wrapper), source, binary, fetched, target, go_program_recipe(package)
            )

    def _module_of(self, package: str, version: str) -> str:
        """The module that holds `package` at `version`: the longest path prefix of it that
        the module proxy serves at that version.

        Raises:
            PinnedVersionNotFound: no prefix of `package` is a module with that version.
        """
        parts = package.split("/")
        prefixes = ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]
        done = subprocess.run(
            [self.go, "mod", "download", "-json", *(f"{p}@{version}" for p in prefixes)],
            env=self._go_env(),
            cwd=tempfile.gettempdir(),
            capture_output=True,
            text=True,
            check=False,
        )
        served = {r["Path"] for r in _json_stream(done.stdout) if not r.get("Error")}
        module = next((p for p in prefixes if p in served), None)
        if module is None:
            raise PinnedVersionNotFound(
                f"no module of the Go module proxy holds {package} at {version}",
                fix=f"check the package path and that {version} is one of its module's "
                "published versions",
            )
        return module

    def _run_go(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], what: str, version: str
    ) -> tuple[int, list[str]]:
        """Run a go build or install with progress lines; its exit code and last output lines."""
        log_path = cwd / f"{what}.log"
        try:
            with step(f"building {what} {version}"), log_path.open("w") as log:
                process = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    # Lower priority: other work on this machine stays responsive during builds.
                    preexec_fn=lambda: os.nice(10),
                )
                try:
                    exit_code = _wait_for_build(process, what)
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                if exit_code != 0:
                    raise _GoExited(exit_code)  # the progress line says "failed", not "done"
        except _GoExited:
            pass
        return exit_code, log_path.read_text().strip().splitlines()[-BUILD_LOG_TAIL_LINES:]


class _GoExited(Exception):
    """A go command exited non-zero (its caller reads the exit code and the log)."""


# Why `go install pkg@version` refuses a module the proxy serves, by what it prints; a wrapper
# module that requires the module builds the same package all the same.
GO_INSTALL_REFUSALS = {
    # It first asks for the module's version list (to warn of deprecation): some proxies
    # refuse the list (403) and serve the version itself.
    "loading deprecation": "the module proxy refuses its version list",
    # Its go.mod pins dependencies with replace directives, which only a main module honours.
    "contains one or more replace directives": "its go.mod has replace directives",
}


def _build_failure(what: str, exit_code: int, tail: Sequence[str], fix: str) -> BuildFailed:
    return BuildFailed(f"{what} exited {exit_code}:\n    " + "\n    ".join(tail), fix=fix)


def go_program_recipe(package: str) -> str:
    return hashlib.sha256(json.dumps(["go-install", package, "-s -w"]).encode()).hexdigest()[:16]


def _program_target(package: str, version: str) -> Path:
    return cache_dir() / "bin" / "programs" / package / version / program_name(package)


def cached_program(package: str, version: str) -> Path | None:
    """Where `go_program(package, version)` has its build cached, or None: not built yet."""
    target = _program_target(package, version)
    return target if stamp_problem(target, version, go_program_recipe(package)) is None else None


def cached_component(source_name: str, binary_name: str) -> Path | None:
    """Where versions.yaml's Go source `source_name` has binary `binary_name` cached at its
    pinned version, or None."""
    source = load_versions().go_source(source_name)
    binary = next(b for b in source.binaries if b.name == binary_name)
    found = _from_cache(cache_dir(), source, binary)
    return found.path if found else None


def go_program(package: str, version: str) -> Path:
    """The binary of Go main package `package` at module version `version`.

    Built once with `go install package@version` from the module proxy (static, CGO off, as
    the cluster's components; through a wrapper module when the proxy refuses the module's
    version list) and cached under `<cache>/bin/programs/`; a service's image
    is made of it (harness.images.builders.go_program_image).

    Raises:
        GoToolchainMissing: `go` is not on PATH.
        BuildFailed: the proxy has no such package or version, or the build failed.

    Example:
        >>> go_program("github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin", "v2.26.0")
        PosixPath('/root/.cache/kube-harness/bin/programs/github.com/.../v2.26.0/go-httpbin')
    """
    cached = cached_program(package, version)
    if cached is not None:
        return cached
    cache = cache_dir()
    target = _program_target(package, version)
    recipe = go_program_recipe(package)
    builder = _GoBuilder(cache)
    with builder._build_lock():
        # A build that held the lock before us may have made it meanwhile.
        if stamp_problem(target, version, recipe) is not None:
            builder.install(package, version, target)
    return target


def _wait_for_build(process: subprocess.Popen[bytes], name: str) -> int:
    started = time.monotonic()
    next_report = started + STILL_BUILDING_EVERY_S

    def finished() -> int | Pending:
        nonlocal next_report
        exit_code = process.poll()
        if exit_code is not None:
            return exit_code
        now = time.monotonic()
        if now >= next_report:
            say(f"still building {name} ({_minutes(now - started)})")
            next_report += STILL_BUILDING_EVERY_S
        return Pending(f"go build of {name} running for {_minutes(now - started)}")

    return wait_for(finished, what=f"go build of {name}", timeout=BUILD_TIMEOUT_S, interval=1.0)


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _json_stream(text: str) -> Iterator[dict]:
    """The JSON objects of `go mod download -json` output, which prints them back to back."""
    decoder = json.JSONDecoder()
    rest = text.strip()
    while rest:
        record, end = decoder.raw_decode(rest)
        yield record
        rest = rest[end:].lstrip()


def _download_error(module: str, version: str, error: str) -> HarnessError:
    if "verifying" in error and "sumdb" in error:
        return BuildFailed(
            f"{module}@{version}: the checksum database has no record of it: {error}",
            fix=f"if you trust the module proxy for it, add {module} to the nosumdb list of "
            f"its source in {VERSIONS_FILE} (or to GONOSUMDB)",
        )
    if re.search(r"\b(403|404|410)\b|unknown revision|invalid version", error):
        return PinnedVersionNotFound(
            f"{module} has no version {version} on the Go module proxy ({error.splitlines()[0]})",
            fix=f"correct the version in {VERSIONS_FILE} (list the published ones with "
            f"`go list -m -versions {module}`)",
        )
    return BuildFailed(
        f"could not download {module}@{version}: {error}",
        fix="check that the module proxy (GOPROXY) is reachable",
    )
