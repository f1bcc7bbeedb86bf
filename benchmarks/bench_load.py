"""Requests per CPU-second: the harness's Locust runner against plain `locust --headless`.

Same locustfile (loadtests/demo.py, no pause between requests), same users, same target (a
small asyncio HTTP server on 127.0.0.1 in its own process), alternating plain and harness
runs so that both see the same machine. Each run's CPU time is the Locust process's own
(rusage at exit, start-up included); requests/s per core = requests / CPU seconds.

    python benchmarks/bench_load.py [--rounds 3] [--seconds 15] [--users 10]

Prints one line per run and the ratio harness/plain (target: at least 0.95).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.load import DEMO_LOCUSTFILE, Constant, LoadRunner  # noqa: E402
from harness.wait import wait_for  # noqa: E402

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Pod-Name: bench-0\r\nX-App-Version: v1\r\n\r\nok\n"
)


class _Answer(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the same small response."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        requests = self.buffer.count(b"\r\n\r\n")
        self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :] if requests else self.buffer
        self.transport.write(RESPONSE * requests)


def serve(port: int, host: str = "127.0.0.1") -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, host, port)
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def plain_run(url: str, users: int, seconds: int, folder: Path, env: dict[str, str]) -> dict:
    """`python -m locust --headless` as a user would run it; CPU from rusage at exit."""
    stats_name = folder / "plain"  # Locust appends .json to the name it is given
    argv = [
        sys.executable, "-m", "locust", "-f", str(DEMO_LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url,
        "--only-summary", "--exit-code-on-error", "0", "--json-file", str(stats_name),
    ]  # fmt: skip
    with (folder / "plain.log").open("wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"plain locust exited {proc.returncode}; see {folder / 'plain.log'}")
    entries = json.loads(stats_name.with_suffix(".json").read_text())
    return {
        "requests": sum(e["num_requests"] for e in entries),
        "cpu": usage.ru_utime + usage.ru_stime,
    }


def harness_run(url: str, users: int, seconds: int, folder: Path, env: dict[str, str]) -> dict:
    shape = Constant(users=users, seconds=seconds, spawn_rate=users)
    runner = LoadRunner(base_url=url, shape=shape, report_dir=folder / "harness", env=env)
    with runner.start() as run:
        result = run.result()
    return {"requests": result.requests, "cpu": run.cpu_seconds, "reliable": result.reliable}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-host", default="127.0.0.1", help=argparse.SUPPRESS)  # in a pod
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.serve_host)
        return 0

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    target = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    env = {**os.environ, "DEMO_USER_RPS": "0"}  # no pause: as many requests as Locust can
    per_core: dict[str, list[float]] = {"plain": [], "harness": []}
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True,
                 what="the benchmark target", timeout=10, transient=(OSError,))  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
            for round_ in range(1, args.rounds + 1):
                for name, measure in (("plain", plain_run), ("harness", harness_run)):
                    folder = Path(tmp) / f"{round_}-{name}"
                    folder.mkdir()
                    started = time.monotonic()
                    got = measure(url, args.users, args.seconds, folder, env)
                    wall = time.monotonic() - started
                    per_core[name].append(got["requests"] / got["cpu"])
                    print(
                        f"round {round_} {name:7}: {got['requests']:7d} requests, "
                        f"{got['cpu']:5.1f} CPU s, {wall:4.1f} s wall, "
                        f"{per_core[name][-1]:7.0f} req/s per core"
                        + ("" if got.get("reliable", True) else "  (generator saturated)"),
                        flush=True,
                    )
    finally:
        target.terminate()
        target.wait()
    plain, harness = (statistics.median(per_core[k]) for k in ("plain", "harness"))
    ratio = harness / plain
    print(f"median req/s per core: plain {plain:.0f}, harness {harness:.0f}")
    print(f"ratio harness/plain: {ratio:.3f} (target >= 0.95): {'OK' if ratio >= 0.95 else 'LOW'}")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    return 0 if ratio >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
