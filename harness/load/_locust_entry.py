"""The Locust process the harness starts: `python _locust_entry.py LOCUST-ARGS...`.

Run as a script, not `-m harness.load...`: importing the `harness` package first would import
ssl and sockets before gevent patches them. Here Locust (and its gevent patches) comes first,
then the recorder, then Locust's own `main()` with the given arguments.
"""

import ctypes
import json
import os
import signal
import sys
from pathlib import Path

# The contract between the harness process and the Locust process (this module imports
# nothing heavy, so the harness side reads these names from here).
PARENT_PID_ENV = "HARNESS_LOAD_PARENT_PID"
EVENTS_FILE_ENV = "HARNESS_LOAD_EVENTS"
# In a pod the events go to standard output, each line marked, among Locust's own lines.
STDOUT_EVENTS = "-"
RECORD_MARKER = "HARNESS-RECORD "
# A pod's Locust writes its CSV and HTML reports here (an emptyDir of the master); at its exit
# they go to standard output too, in chunks of lines marked so, and the harness writes them
# into the run's report folder as the host runner's are.
POD_REPORTS = "/reports"
POD_REPORTS_ENV = "HARNESS_LOAD_POD_REPORTS"  # set for the pod that writes them
REPORT_MARKER = "HARNESS-REPORT "
# JSON escapes a character to at most 6: a chunk stays under the runtime's 16 KiB log line.
REPORT_CHUNK_CHARS = 2000
SHAPE_ENV = "HARNESS_LOAD_SHAPE"
POD_HEADER_ENV = "HARNESS_LOAD_POD_HEADER"
VERSION_FROM_ENV = "HARNESS_LOAD_VERSION_FROM"
# Asks Locust to end the test the way a finished shape does: users finish their current
# request (--stop-timeout), then Locust writes its reports and our summary.
STOP_SIGNAL = signal.SIGUSR1
# The demo service names the serving pod and its version in these response headers. Where a
# response says its version: `header:NAME`, or `json:FIELD` of a JSON body (dots go deeper).
POD_HEADER = "X-Pod-Name"
VERSION_FROM = "header:X-App-Version"
SHAPE_LOCUSTFILE = Path(__file__).with_name("locust_shape.py")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Let the kernel kill this process when the harness process dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != os.environ.get(PARENT_PID_ENV, str(os.getppid())):
        os._exit(1)  # the parent died before prctl took effect


def main() -> None:
    # The script's own folder would shadow top-level modules with harness/load's files.
    sys.path[0] = str(Path(__file__).resolve().parents[2])
    _die_with_parent()
    import locust.main  # first: gevent patches before ssl/socket load

    from harness.load import _recorder

    _recorder.install(
        os.environ.get(EVENTS_FILE_ENV),  # a worker has none: it sends its records to the master
        pod_header=os.environ.get(POD_HEADER_ENV, POD_HEADER),
        version_from=os.environ.get(VERSION_FROM_ENV, VERSION_FROM),
    )
    sys.argv = ["locust", *sys.argv[1:]]
    try:
        locust.main.main()  # ends with SystemExit
    finally:
        if folder := os.environ.get(POD_REPORTS_ENV):
            _print_reports(Path(folder))


def _print_reports(folder: Path) -> None:
    """Each report file of a pod's Locust to standard output, in marked JSON chunks."""
    for path in sorted(folder.iterdir()):
        text = path.read_text(encoding="utf-8", errors="replace")
        for start in range(0, max(len(text), 1), REPORT_CHUNK_CHARS):
            chunk = {"file": path.name, "text": text[start : start + REPORT_CHUNK_CHARS]}
            sys.stdout.write(REPORT_MARKER + json.dumps(chunk) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
