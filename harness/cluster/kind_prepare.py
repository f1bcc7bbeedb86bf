"""`harness kind prepare`: make a machine without a usable Docker able to run kind.

Validate, then run: `plan()` looks at the machine and lists each change with the reason for
it; nothing changes until the user runs `prepare()` (the command without --dry-run). On a
machine with a working Docker and a registry none of this is needed: stock kind pulls
stock images. What it can do:

- install Debian's docker.io and start dockerd (by hand where systemd is not PID 1);
- where the capability bounding set lacks CAP_SYS_RESOURCE (privileged containers fail
  with "unable to apply caps"), install the runc wrapper of `runtime_shim` and make it
  Docker's default runtime, since kind does not let one pick a runtime;
- build kind from the Go module proxy at the pinned version;
- build the kind node image offline (`harness.images.kind_node`) and `docker load` it.

Every change to the machine is recorded first (`harness.host_changes`: daemon.json's
original, the wrapper, IPv4 forwarding, the package); `harness kind unprepare` puts back what
no local cluster still needs. A default runtime someone else configured is never replaced
without --replace-default-runtime.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import host_changes
from harness.cluster import runtime_shim
from harness.cluster.build import ensure_binaries
from harness.commands import run
from harness.errors import CommandFailed, HarnessError, InvalidConfiguration
from harness.paths import cache_dir
from harness.progress import say, step
from harness.wait import Pending, wait_for

SHIM_NAME = "kube-harness-runc"
SHIM_PATH = Path("/usr/local/libexec/kube-harness") / SHIM_NAME
DAEMON_CONFIG = Path("/etc/docker/daemon.json")
DOCKERD_LOG = Path("/var/log/kube-harness/dockerd.log")
IP_FORWARD = "net/ipv4/ip_forward"
OWNER = "kind-prepare"  # what `harness kind prepare` holds in the record of host changes
DOCKER_SERVICE = "docker"
# Docker's own runtime: making the wrapper the default replaces nothing anyone chose.
DOCKER_RUNTIME = "runc"
# Where `prepare` records the node image it built; the kind provider uses it by default.
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24


@dataclass(frozen=True)
class Change:
    """One change `prepare` makes, said before it is made."""

    what: str
    why: str
    apply: Callable[[], None]


def bounding_set_has(*caps: int) -> bool:
    """Whether this process's capability bounding set holds every capability in `caps`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return all(mask >> cap & 1 for cap in caps)
    return True


def needs_runtime_shim() -> bool:
    """Privileged containers fail here without the runc wrapper."""
    return not bounding_set_has(CAP_SYS_ADMIN, CAP_SYS_RESOURCE)


def shim_script() -> str:
    """The wrapper as installed: the `runtime_shim` module run by the system Python."""
    return "#!/usr/bin/python3 -I\n" + Path(runtime_shim.__file__).read_text()


def daemon_config_with_shim(current: dict) -> dict:
    """Docker's daemon.json with the wrapper registered and made the default runtime."""
    config = dict(current)
    config["runtimes"] = {**config.get("runtimes", {}), SHIM_NAME: {"path": str(SHIM_PATH)}}
    config["default-runtime"] = SHIM_NAME
    return config


def _read_daemon_config() -> dict:
    if not DAEMON_CONFIG.is_file():
        return {}
    try:
        return json.loads(DAEMON_CONFIG.read_text() or "{}")
    except ValueError as exc:
        raise InvalidConfiguration(
            f"{DAEMON_CONFIG} is not valid JSON ({exc})",
            fix=f"fix or remove {DAEMON_CONFIG}, then run `harness kind prepare` again",
        ) from exc


def docker_answers() -> bool:
    done = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return done.returncode == 0


def docker_default_runtime() -> str:
    return run(["docker", "info", "--format", "{{.DefaultRuntime}}"], timeout=30).strip()


def _systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()


def install_docker() -> None:
    host_changes.note_package("docker.io", OWNER)
    apt_install("docker.io")


def apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-qq", package], env=env, timeout=1200)


def install_shim() -> None:
    host_changes.back_up_file(SHIM_PATH, OWNER)
    SHIM_PATH.parent.mkdir(parents=True, exist_ok=True)
    partial = SHIM_PATH.with_name(SHIM_PATH.name + ".partial")
    partial.write_text(shim_script())
    partial.chmod(0o755)
    partial.replace(SHIM_PATH)


def register_shim() -> None:
    host_changes.back_up_file(DAEMON_CONFIG, OWNER)
    DAEMON_CONFIG.parent.mkdir(parents=True, exist_ok=True)
    config = daemon_config_with_shim(_read_daemon_config())
    DAEMON_CONFIG.write_text(json.dumps(config, indent=2) + "\n")


def keep_forward_policy() -> None:
    # Docker sets the FORWARD policy to DROP only when it has to turn IP forwarding on
    # itself; that policy would cut the local provider's pod traffic.
    host_changes.set_sysctls({IP_FORWARD: "1"}, OWNER)


def start_docker(*, restart: bool) -> None:
    """Start (or restart) dockerd and wait until it answers (recorded: Docker turns IPv4
    forwarding on when it starts, and a daemon started here is stopped by `unprepare`)."""
    host_changes.hold_sysctls([IP_FORWARD], OWNER)
    if not restart:
        host_changes.note_service(DOCKER_SERVICE, OWNER)
    _launch_dockerd(restart=restart)


def _launch_dockerd(*, restart: bool) -> None:
    if _systemd_runs():
        run(["systemctl", "restart" if restart else "start", "docker"], timeout=120)
    else:
        if restart:
            _stop_hand_started_dockerd()
        DOCKERD_LOG.parent.mkdir(parents=True, exist_ok=True)
        with DOCKERD_LOG.open("ab") as log:
            subprocess.Popen(
                ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
    wait_for(
        lambda: docker_answers() or Pending("docker info does not answer yet"),
        what="the Docker daemon to answer",
        timeout=120,
        interval=1.0,
    )


def stop_docker() -> None:
    if _systemd_runs():
        run(["systemctl", "stop", "docker"], timeout=120)
    else:
        _stop_hand_started_dockerd()


def _stop_hand_started_dockerd() -> None:
    pidfile = Path("/var/run/docker.pid")
    if not pidfile.is_file():
        return
    pid = int(pidfile.read_text().strip() or 0)
    if pid <= 0:
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.5)


# Where dockerd's flags are set when Docker is not running to say them (`docker info`).
DOCKERD_FLAG_FILES = (
    Path("/etc/default/docker"),
    Path("/lib/systemd/system/docker.service"),
    Path("/etc/systemd/system/docker.service"),
    *sorted(Path("/etc/systemd/system/docker.service.d").glob("*.conf")),
)
DEFAULT_RUNTIME_FLAG = re.compile(r"--default-runtime[= ]+([A-Za-z0-9._-]+)")


def configured_default_runtime(*, docker_running: bool) -> tuple[str, str] | None:
    """The default runtime someone configured for Docker and where: daemon.json, else
    dockerd's flags (as `docker info` reports them, or in its unit and defaults files while
    it is stopped); None when it is Docker's own or the wrapper."""
    found: tuple[str, str] | None = None
    configured = _read_daemon_config().get("default-runtime")
    if configured is not None:
        found = (configured, str(DAEMON_CONFIG))
    elif docker_running:
        found = (docker_default_runtime(), "a dockerd flag")
    else:
        for path in (p for p in DOCKERD_FLAG_FILES if p.is_file()):
            if flag := DEFAULT_RUNTIME_FLAG.search(path.read_text(errors="replace")):
                found = (flag[1], f"a dockerd flag in {path}")
                break
    return None if found is None or found[0] in (DOCKER_RUNTIME, SHIM_NAME) else found


def plan(*, node_image: bool = True, replace_default_runtime: bool = False) -> list[Change]:
    """Every change this machine needs to run kind, with the reason for each.

    Raises:
        InvalidConfiguration: the wrapper is needed but Docker's default runtime is one
            someone chose, and `replace_default_runtime` was not given.
    """
    changes: list[Change] = []
    has_docker = shutil.which("dockerd") is not None
    if not has_docker:
        changes.append(
            Change("install Debian's docker.io", "no Docker engine on this machine", install_docker)
        )
    config_changes = False
    running = has_docker and docker_answers()
    if needs_runtime_shim():
        why = (
            "this machine's capability bounding set lacks CAP_SYS_RESOURCE, so privileged "
            "containers (kind's nodes) fail with 'unable to apply caps'"
        )
        if not SHIM_PATH.is_file() or SHIM_PATH.read_text() != shim_script():
            changes.append(Change(f"install the runc wrapper {SHIM_PATH}", why, install_shim))
        if daemon_config_with_shim(_read_daemon_config()) != _read_daemon_config():
            chosen = configured_default_runtime(docker_running=running)
            if chosen and chosen[1] != str(DAEMON_CONFIG):
                raise InvalidConfiguration(
                    f"Docker's default runtime is {chosen[0]!r}, set by {chosen[1]}; kind's "
                    f"privileged nodes need the runc wrapper {SHIM_NAME} as the default here "
                    f"({why}), and dockerd refuses a default runtime given both as a flag and "
                    "in daemon.json",
                    fix="remove that --default-runtime flag and run `harness kind prepare` "
                    "again (the wrapper then becomes the default in daemon.json), or use the "
                    "local provider",
                )
            if chosen and not replace_default_runtime:
                raise InvalidConfiguration(
                    f"Docker's default runtime is {chosen[0]!r}; kind's privileged nodes need "
                    f"the runc wrapper {SHIM_NAME} as the default here ({why})",
                    fix="run `harness kind prepare --replace-default-runtime` to make the "
                    f"wrapper the default ({DAEMON_CONFIG} is backed up and `harness kind "
                    "unprepare` restores it), or use the local provider",
                )
            changes.append(
                Change(
                    f"make it Docker's default runtime in {DAEMON_CONFIG}",
                    why + "; kind gives no way to choose a runtime per container",
                    register_shim,
                )
            )
            config_changes = True
    if (host_changes.PROC_SYS / IP_FORWARD).read_text().strip() != "1" and not running:
        changes.append(
            Change(
                "turn on IPv4 forwarding (net.ipv4.ip_forward=1)",
                "Docker turns it on anyway, but then also sets the iptables FORWARD policy "
                "to DROP, which would cut a local cluster's pod traffic",
                keep_forward_policy,
            )
        )
    if not running:
        changes.append(Change("start the Docker daemon", "kind runs its nodes in Docker", _start))
    elif config_changes:
        changes.append(
            Change(
                "restart the Docker daemon", "it reads daemon.json only when it starts", _restart
            )
        )
    changes.append(
        Change(
            "build kind from the Go module proxy (or reuse the cached build)",
            "kind's release downloads come from GitHub, which is not reachable everywhere",
            lambda: ensure_binaries(["kind"]),
        )
    )
    if node_image:
        changes.append(
            Change(
                "build the kind node image offline (or reuse the cached one), load it into Docker",
                "no registry is needed: it is made from the same official sources as the "
                "local provider's cluster",
                build_and_load_node_image,
            )
        )
    return changes


def _start() -> None:
    start_docker(restart=False)


def _restart() -> None:
    start_docker(restart=True)


def _prepared_node_image_file() -> Path:
    return cache_dir() / "kind" / "node-image"


def build_and_load_node_image() -> str:
    from harness.images.kind_node import build_node_image

    image = build_node_image()
    if subprocess.run(
        ["docker", "image", "inspect", image.ref], capture_output=True, check=False
    ).returncode:
        with step(f"docker load {image.archive.name}"):
            run(["docker", "load", "-i", image.archive], timeout=1800)
    prepared = _prepared_node_image_file()
    prepared.parent.mkdir(parents=True, exist_ok=True)
    prepared.write_text(image.ref + "\n")
    return image.ref


def prepared_node_image() -> str | None:
    """The node image `harness kind prepare` built, if it did."""
    try:
        return _prepared_node_image_file().read_text().strip() or None
    except OSError:
        return None


def _need_root(command: str) -> None:
    if os.geteuid() != 0:
        raise InvalidConfiguration(
            f"{command} changes this machine (packages, /etc/docker) and needs root",
            fix=f"run it as root (sudo {command})",
        )


def prepare(changes: list[Change]) -> None:
    """Apply `changes` in order, saying each before it is made."""
    _need_root("harness kind prepare")
    for change in changes:
        say(f"{change.what}: {change.why}")
        with step(change.what):
            try:
                change.apply()
            except HarnessError:
                raise
            except (OSError, subprocess.SubprocessError) as exc:
                raise CommandFailed(
                    f"{change.what} failed: {exc}",
                    fix="fix the cause above and run `harness kind prepare` again",
                ) from exc


def held() -> list[str]:
    """What `prepare` changed on this machine and `unprepare` would put back."""
    return host_changes.held_by(OWNER)


def unprepare(*, force: bool = False) -> list[str]:
    """Put back what `prepare` changed (daemon.json, the wrapper, a Docker daemon it started,
    IPv4 forwarding where no local cluster needs it); return what was done, in words.

    Raises:
        InvalidConfiguration: Docker holds containers and would be restarted or stopped
            under them (kind's nodes among them; containers made with the wrapper would not
            start again), unless `force`.
    """
    _need_root("harness kind unprepare")
    holding = held()
    running = shutil.which("docker") is not None and docker_answers()
    started_docker = host_changes.SERVICE + DOCKER_SERVICE in holding
    restarts = not started_docker and host_changes.FILE + str(DAEMON_CONFIG) in holding
    if running and (started_docker or restarts) and not force:
        containers = docker_containers()
        if containers:
            shown = ", ".join(containers[:5]) + (", ..." if len(containers) > 5 else "")
            raise InvalidConfiguration(
                f"Docker holds {len(containers)} container(s) ({shown}); putting its "
                f"configuration back {'stops' if started_docker else 'restarts'} Docker, "
                "which stops them (those made with the wrapper would not start again)",
                fix="delete kind clusters (`harness cluster down --provider kind --name NAME`) "
                "and remove the other containers first, or pass --force",
            )
    if started_docker and running:
        with step("stopping the Docker daemon `harness kind prepare` started"):
            stop_docker()
    done = host_changes.release(OWNER)
    if restarts and running:
        with step(f"restarting the Docker daemon to read the restored {DAEMON_CONFIG}"):
            _launch_dockerd(restart=True)
    return done


def docker_containers() -> list[str]:
    """Names of every container Docker holds, running or not."""
    return run(["docker", "ps", "-a", "--format", "{{.Names}}"], timeout=60).split()
