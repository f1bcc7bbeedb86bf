"""What a cluster leaves on the host besides the network: processes, mounts and cgroups."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from harness.cluster.local.layout import CGROUP_ROOT, Layout
from harness.wait import Pending, wait_for


def _mentions(pid: int, folders: tuple[str, ...]) -> bool:
    """Whether a process's arguments name one of `folders` or a path inside one."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(arg in folders or any(f"{folder}/" in arg for folder in folders) for arg in args)


def cgroup_dirs(layout: Layout) -> list[Path]:
    """The cluster's cgroup in every hierarchy where it exists."""
    name = layout.cgroup_parent.lstrip("/")
    return [h / name for h in CGROUP_ROOT.iterdir() if (h / name).is_dir()]


def v1_hierarchies() -> list[Path]:
    """Mount points of the cgroup v1 hierarchies (cpu, memory, pids, name=systemd, ...)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        fstype = fields[fields.index("-") + 1]
        if fstype == "cgroup":
            found.append(Path(fields[4]))
    return found


def create_cgroups(layout: Layout) -> None:
    """Make the kubelet's cgroup root in every v1 hierarchy (it must exist beforehand)."""
    name = layout.cgroup_parent.lstrip("/")
    for hierarchy in v1_hierarchies():
        group = hierarchy / name
        group.mkdir(exist_ok=True)
        if (hierarchy / "cpuset.cpus").exists():
            # A new cpuset starts empty; it must be given CPUs and memory nodes to hold tasks.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (group / knob).write_text((hierarchy / knob).read_text())


def cluster_pids(layout: Layout) -> set[int]:
    """Processes of the cluster: its supervisor, components and shims (by their command
    lines, which name its folders) and every container process (by its cgroup)."""
    folders = (str(layout.state_dir), str(layout.run_dir))
    me = os.getpid()
    pids = {
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and int(p.name) != me and _mentions(int(p.name), folders)
    }
    for group in cgroup_dirs(layout):
        for procs in group.rglob("cgroup.procs"):
            try:
                pids |= {int(x) for x in procs.read_text().split()}
            except OSError:
                continue
    return pids


def kill_processes(layout: Layout, timeout: float = 30) -> None:
    """SIGKILL every process of the cluster until none is left."""

    def none_left() -> bool | Pending:
        pids = cluster_pids(layout)
        if not pids:
            return True
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return Pending(f"{len(pids)} process(es) still running: {sorted(pids)[:10]}")

    wait_for(none_left, what="the cluster's processes to exit", timeout=timeout, interval=0.3)


def cluster_mounts(layout: Layout) -> list[str]:
    """Mount points under the cluster's folders, deepest first."""
    roots = (str(layout.state_dir) + "/", str(layout.run_dir) + "/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if (point + "/").startswith(roots):
            points.append(point)
    return sorted(set(points), key=lambda p: (p.count("/"), p), reverse=True)


def unmount_all(layout: Layout) -> None:
    def none_left() -> bool | Pending:
        points = cluster_mounts(layout)
        if not points:
            return True
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        return Pending(f"{len(points)} mount(s) left, e.g. {points[0]}")

    wait_for(none_left, what="the cluster's mounts to go", timeout=30, interval=0.2)


def remove_cgroups(layout: Layout) -> None:
    def none_left() -> bool | Pending:
        groups = cgroup_dirs(layout)
        if not groups:
            return True
        for group in groups:
            for path in sorted(
                group.rglob("*/"), key=lambda p: p.as_posix().count("/"), reverse=True
            ):
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()
            with contextlib.suppress(OSError):
                group.rmdir()
        return Pending(f"cgroups left: {', '.join(str(g) for g in cgroup_dirs(layout))}")

    wait_for(none_left, what="the cluster's cgroups to go", timeout=30, interval=0.3)


# The kubelet links every container log here; the folder is fixed in its code.
CONTAINER_LOG_LINKS = Path("/var/log/containers")


def remove_container_log_links(layout: Layout) -> None:
    """Delete the kubelet's /var/log/containers links into the cluster's pod log folder."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    prefix = f"{layout.pod_logs_dir}/"
    for link in CONTAINER_LOG_LINKS.iterdir():
        if link.is_symlink() and os.readlink(link).startswith(prefix):
            link.unlink()
    with contextlib.suppress(OSError):  # left when another kubelet still logs there
        CONTAINER_LOG_LINKS.rmdir()
