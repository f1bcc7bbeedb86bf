"""The supervisor: one small process per cluster that keeps its components running.

It outlives `harness cluster up`, so clusters can be reused between runs. It starts the
components listed in `components.json` (each once the files or TCP ports it waits for are
there), writes each one's output to `logs/<name>.log`, restarts a component that exits
(with back-off) unless told to keep it stopped, and answers commands on a Unix socket, one
JSON object a line: {"op": "status" | "stop" | "start" | "restart" | "shutdown", "component": NAME}.

Run as `python -m harness.cluster.local STATE_DIR RUN_DIR`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cluster.local.layout import COMPONENTS
from harness.errors import CommandFailed

POLL_S = 0.2
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 8.0


def note(message: str) -> None:
    """One line in the supervisor's own log (its standard output)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _available(thing: str) -> bool:
    """Whether a prerequisite is there: a file path, or "tcp://HOST:PORT" that accepts."""
    if not thing.startswith("tcp://"):
        return Path(thing).exists()
    host, _, port = thing.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=0.2).close()
    except OSError:
        return False
    return True


@dataclass
class Component:
    """One supervised process and what the supervisor knows about it."""

    name: str
    argv: list[str]
    wait_for: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    wanted: bool = True
    restarts: int = 0
    backoff_s: float = 0.0
    next_start: float = 0.0
    last_exit: int | None = None
    started_at: float = 0.0

    def ready_to_start(self, now: float) -> bool:
        return (
            self.wanted
            and self.process is None
            and now >= self.next_start
            and all(_available(w) for w in self.wait_for)
        )

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"\n=== {time.strftime('%H:%M:%S')} starting {self.name}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        note(f"started {self.name} (pid {self.process.pid})")

    def stop(self) -> None:
        """Terminate the component's process group; kill it after a grace period."""
        process = self.process
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            process.wait()
        self.last_exit = process.returncode
        self.process = None
        note(f"stopped {self.name} (exit {self.last_exit})")

    def reap(self, now: float) -> None:
        """Notice an exit and schedule a restart with back-off (reset after a good run)."""
        if self.process is None or self.process.poll() is None:
            return
        self.last_exit = self.process.returncode
        self.process = None
        ran_for = now - self.started_at
        self.backoff_s = 1.0 if ran_for > 30 else min(max(self.backoff_s * 2, 0.5), MAX_BACKOFF_S)
        self.next_start = now + self.backoff_s
        self.restarts += 1
        note(f"{self.name} exited {self.last_exit}; restarting in {self.backoff_s:g}s")
        with self.log.open("ab") as out:
            out.write(
                f"=== {time.strftime('%H:%M:%S')} {self.name} exited {self.last_exit}; "
                f"restarting in {self.backoff_s:g}s\n".encode()
            )

    def status(self) -> dict[str, Any]:
        return {
            "pid": self.process.pid if self.process else None,
            "running": self.process is not None,
            "wanted": self.wanted,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }


class Supervisor:
    def __init__(self, state_dir: Path, run_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = run_dir
        specs = json.loads((state_dir / "components.json").read_text())
        self.components = {
            s["name"]: Component(
                s["name"], s["argv"], s.get("wait_for", []), state_dir / "logs" / f"{s['name']}.log"
            )
            for s in specs
        }
        self.running = True

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "status":
            return {"ok": True, "components": {n: c.status() for n, c in self.components.items()}}
        if op == "shutdown":
            self.running = False
            return {"ok": True}
        component = self.components.get(request.get("component", ""))
        if component is None:
            return {"ok": False, "error": f"no component {request.get('component')!r}"}
        if op in ("stop", "restart"):
            component.wanted = False
            component.stop()
        if op in ("start", "restart"):
            component.wanted = True
            component.backoff_s = 0.0
            component.next_start = 0.0
            if component.ready_to_start(time.monotonic()):
                component.start()
        if op not in ("stop", "start", "restart"):
            return {"ok": False, "error": f"unknown op {op!r}"}
        return {"ok": True, "component": component.status()}

    def serve_one(self, server: socket.socket) -> None:
        try:
            conn, _ = server.accept()
        except (BlockingIOError, TimeoutError):
            return
        with conn:
            conn.settimeout(5)
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            try:
                reply = self.handle(json.loads(data or b"{}"))
            except ValueError as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def write_status(self) -> None:
        pids = {n: c.process.pid for n, c in self.components.items() if c.process}
        partial = self.run_dir / "pids.json.partial"
        partial.write_text(json.dumps({"supervisor": os.getpid(), "components": pids}))
        partial.replace(self.run_dir / "pids.json")

    def run(self) -> None:
        sock_path = self.run_dir / "supervisor.sock"
        sock_path.unlink(missing_ok=True)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock_path))
        server.listen(8)
        server.settimeout(POLL_S)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        note(f"supervising {', '.join(self.components)} (pid {os.getpid()})")
        try:
            while self.running:
                now = time.monotonic()
                for component in self.components.values():
                    component.reap(now)
                    if component.ready_to_start(now):
                        component.start()
                self.write_status()
                self.serve_one(server)
        finally:
            for component in reversed(self.components.values()):
                component.wanted = False
                component.stop()
            self.write_status()
            note("all components stopped; exiting")
            server.close()
            sock_path.unlink(missing_ok=True)


def request(socket_path: Path, op: str, component: str | None = None, timeout: float = 30) -> dict:
    """Send one command to a cluster's supervisor and return its answer.

    Raises:
        CommandFailed: the supervisor does not answer or refuses the command.
    """
    message = {"op": op} | ({"component": component} if component else {})
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(socket_path))
            conn.sendall(json.dumps(message).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise CommandFailed(
            f"the cluster supervisor at {socket_path} does not answer ({exc})",
            fix="run `harness cluster up` to repair the cluster, or `harness cluster down`",
        ) from None
    reply = json.loads(data or b"{}")
    if not reply.get("ok"):
        raise CommandFailed(
            f"the cluster supervisor refused {op} {component or ''}: {reply.get('error')}",
            fix="name a component: " + ", ".join(COMPONENTS),
        )
    return reply


def main(argv: list[str]) -> None:
    """Supervise the components of the cluster whose folders are `argv` (state, run)."""
    state_dir, run_dir = Path(argv[0]), Path(argv[1])
    Supervisor(state_dir, run_dir).run()
