"""Bad input at every entry point of the harness (issue 16): each gets one clear error that
names the thing, where it is and the fix. The CLI exits 2 with `error:` and `fix:` lines and
no traceback; the library raises InvalidConfiguration; pytest stops with a usage error (exit
4) before it collects anything. Nothing hangs (every case runs under a timeout), nothing
exhausts memory and nothing is silently accepted.

A report is the one exception by design (harness.report.model): what a run folder holds is
never fatal, a broken file becomes a line of the partial report naming the file and what is
not shown, and the command exits 0.

Each row: (category/name, build(tmp_path) -> call, fragments the error must contain), where
`{tmp}` in a fragment stands for tmp_path.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import kubeconfigs
import pytest
import yaml

from harness.chaos.experiment import load_experiment, validate_experiment
from harness.cli import main
from harness.cluster.existing import check_kubeconfig
from harness.cluster.provider import ClusterOptions
from harness.errors import InvalidConfiguration
from harness.load.shapes import parse_shape, shape_from_spec
from harness.load.slo import SLO
from harness.paths import CACHE_DIR_ENV
from harness.progress import route_to
from harness.run import RUN_ID_ENV, Run
from harness.spec import load_spec
from harness.user_files import MAX_BYTES

TIMEOUT_S = 20
MEMORY_LIMIT = 2 * 1024**3  # for the commands that read /dev/zero: a leak fails, not the machine
PLAIN_MANIFESTS = Path(__file__).parent / "data" / "render" / "plain-folder"
CATEGORIES = (
    "spec",
    "experiment",
    "slo",
    "shape",
    "cli",
    "kubeconfig",
    "report",
    "run_id",
    "names",
)
# A frame of a Python traceback or of pytest's long representation of one.
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|\.py:\d+: in ")

Make = Callable[[Path], Path]  # creates the file at the path given, returns the path
Build = Callable[[Path], Callable[[], object]]


# --------------------------------------------------------------------------- bad files


def text(content: str) -> Make:
    def make(path: Path) -> Path:
        path.write_text(content)
        return path

    return make


def data(content: bytes) -> Make:
    def make(path: Path) -> Path:
        path.write_bytes(content)
        return path

    return make


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def directory(path: Path) -> Path:
    path.mkdir()
    return path


def dev_zero(path: Path) -> Path:
    path.symlink_to("/dev/zero")
    return path


def oversized(path: Path) -> Path:
    with path.open("wb") as file:
        file.truncate(MAX_BYTES + 1)
    return path


BINARY = data(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
EMPTY = text("")
ALIAS_BOMB = text(
    "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]\n"
        for before, name in zip("abcdef", "bcdefg", strict=True)
    )
)


def utf16(content: str) -> Make:
    return data(content.encode("utf-16"))


# --------------------------------------------------------------------------- valid inputs, to spoil

SPEC = """\
apiVersion: kube-harness/v1
kind: ResilienceSpec
services:
  - name: {name}
    manifests: {manifests}
    deployment: {deployment}
    container: {container}
    images: {{current: "example.org/web:v1.0.0"}}
    load: {load}
    slo: {slo}
    expect: {expect}
"""


def spec_text(**changes: str) -> str:
    """A valid spec (one service) with `changes` made to its service's fields."""
    values = {
        "name": "web",
        "manifests": str(PLAIN_MANIFESTS),
        "deployment": "web",
        "container": "web",
        "load": "{path: /, users: 1}",
        "slo": "{error_rate: 0%}",
        "expect": "{}",
        **changes,
    }
    return SPEC.format(**values)


EXPERIMENT = {
    "title": "t",
    "description": "d",
    "method": [
        {
            "type": "probe",
            "name": "root-exists",
            "provider": {
                "type": "python",
                "module": "os.path",
                "func": "exists",
                "arguments": {"path": "/"},
            },
        }
    ],
}


def experiment_yaml(**changes: object) -> Make:
    """A valid experiment with `changes` made to its top level, as YAML (`.inf` and all)."""
    return text(yaml.safe_dump({**EXPERIMENT, **changes}, sort_keys=False))


def extension(**values: object) -> Make:
    return experiment_yaml(extensions=[{"name": "kube-harness", **values}])


def kubeconfig_yaml(**changes: object) -> Make:
    document = {k: v for k, v in kubeconfigs.kubeconfig(**changes).items() if v is not None}
    return text(yaml.safe_dump(document))


VALID_KUBECONFIG = {"kubeconfig": kubeconfig_yaml()}


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class Exited:
    """A command's exit code and what it printed on standard error, and the code it must
    exit with."""

    code: object
    output: str
    expected: int


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _make(tmp: Path, files: Mapping[str, Make]) -> None:
    for name, make in files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)


def cli(
    *args: str,
    files: Mapping[str, Make] | None = None,
    env: Mapping[str, str] | None = None,
    exit: int = 2,
) -> Build:
    """`harness ARGS` in this process (`{tmp}` in an argument stands for tmp_path)."""

    def build(tmp: Path) -> Callable[[], Exited]:
        _make(tmp, files or {})
        argv = [arg.format(tmp=tmp) for arg in args]

        def call() -> Exited:
            err = io.StringIO()
            restore = route_to(lambda line: err.write(f"{line}\n"))  # say(): the report's lines
            try:
                with environment(env or {}), redirect_stdout(io.StringIO()), redirect_stderr(err):
                    try:
                        code = main(argv)
                    except SystemExit as exc:  # argparse's usage errors
                        code = exc.code
            finally:
                restore()
            return Exited(code, err.getvalue(), exit)

        return call

    return build


def cli_process(*args: str, files: Mapping[str, Make]) -> Build:
    """`harness ARGS` in a process of its own under a memory limit (what reads /dev/zero),
    making a partial report (0)."""
    program = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))\n"
        "from harness.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )

    def build(tmp: Path) -> Callable[[], Exited]:
        _make(tmp, files)
        argv = [arg.format(tmp=tmp) for arg in args]

        def call() -> Exited:
            done = subprocess.run(
                [sys.executable, "-c", program, *argv],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
            return Exited(done.returncode, done.stderr, 0)

        return call

    return build


def pytest_run(*args: str, env: Mapping[str, str] | None = None) -> Build:
    """pytest ARGS on an empty folder, in this process: a usage error (4)."""

    def build(tmp: Path) -> Callable[[], Exited]:
        _make(tmp, {"inner": directory})
        argv = ["-p", "no:cacheprovider", "-s", "-q", f"--rootdir={tmp / 'inner'}"]
        argv += [arg.format(tmp=tmp) for arg in args]

        def call() -> Exited:
            out = io.StringIO()
            with environment(env or {}), redirect_stdout(out), redirect_stderr(out):
                code = pytest.main([*argv, str(tmp / "inner")])
            return Exited(int(code), out.getvalue(), int(pytest.ExitCode.USAGE_ERROR))

        return call

    return build


def call(function: Callable[..., object], *args: object, **kwargs: object) -> Build:
    """A library function called with fixed arguments."""
    return lambda tmp: partial(function, *args, **kwargs)


def on_file(name: str, make: Make, read: Callable[[Path], object]) -> Build:
    def build(tmp: Path) -> Callable[[], object]:
        path = tmp / name
        make(path)
        return partial(read, path)

    return build


def spec(make: Make) -> Build:
    return on_file("spec.yaml", make, load_spec)


def _validated(path: Path) -> object:
    return validate_experiment(load_experiment(path), path)


def experiment(make: Make, name: str = "experiment.yaml") -> Build:
    return on_file(name, make, _validated)


def slo(make: Make) -> Build:
    return on_file("slo.yaml", make, SLO.load)


def kubeconfig(make: Make) -> Build:
    return on_file("kubeconfig", make, lambda path: check_kubeconfig(path, None))


def run_id(value: str | None = None, env: str | None = None) -> Build:
    def build(tmp: Path) -> Callable[[], object]:
        def call() -> object:
            with environment({RUN_ID_ENV: env} if env else {}):
                return Run.from_environment(tmp / "reports", value)

        return call

    return build


RUN = "reports/run-1"
TEST = f"{RUN}/t1"


def report(files: Mapping[str, Make], *args: str, process: bool = False) -> Build:
    """`harness report` on reports/run-1/ holding `files` in place of a good test folder t1/."""
    files = {
        f"{TEST}/result.json": text('{"passed": true, "verdicts": []}'),
        f"{TEST}/timeline.jsonl": text('{"t": 1, "kind": "Mark", "name": "m"}\n'),
        **files,
    }
    argv = ("report", f"{{tmp}}/{RUN}", *args)
    return cli_process(*argv, files=files) if process else cli(*argv, files=files, exit=0)


LOAD_RUN = ("load", "run", "--url", "http://127.0.0.1:1", "--report-dir", "{tmp}/load")
EXISTING = ("--provider", "existing", "--kubeconfig", "{tmp}/kubeconfig")

# --------------------------------------------------------------------------- the cases

CASES: list[tuple[str, Build, list[str]]] = [
    # --- the resilience spec
    ("spec/missing", cli("run", "{tmp}/nope.yaml"), ["{tmp}/nope.yaml", "does not exist"]),
    (
        "spec/directory-given-to-run",
        cli("run", "{tmp}/specs", files={"specs": directory}),
        ["{tmp}/specs", "is a directory"],
    ),
    ("spec/fifo", spec(fifo), ["{tmp}/spec.yaml", "not a regular file"]),
    ("spec/dev-zero", spec(dev_zero), ["{tmp}/spec.yaml", "not a regular file"]),
    ("spec/binary", spec(BINARY), ["{tmp}/spec.yaml", "not UTF-8"]),
    ("spec/utf16", spec(utf16(spec_text())), ["{tmp}/spec.yaml", "not UTF-8"]),
    ("spec/empty", spec(EMPTY), ["{tmp}/spec.yaml", "spec: must be a mapping, not NoneType"]),
    ("spec/oversized", spec(oversized), ["{tmp}/spec.yaml", "more than"]),
    (
        "spec/duplicate-key",
        spec(text(spec_text(load="{path: /, users: 1, users: 5}"))),
        ["{tmp}/spec.yaml", "the key 'users' appears twice", "line 9"],
    ),
    ("spec/alias-bomb", spec(ALIAS_BOMB), ["{tmp}/spec.yaml", "expand to more than"]),
    ("spec/not-yaml", spec(text("services: [\n")), ["{tmp}/spec.yaml", "not valid YAML"]),
    ("spec/a-list", spec(text("- a\n- b\n")), ["{tmp}/spec.yaml", "spec: must be a mapping"]),
    (
        "spec/services-a-string",
        spec(text("apiVersion: kube-harness/v1\nkind: ResilienceSpec\nservices: x\n")),
        ["{tmp}/spec.yaml", "spec.services: must be a non-empty list"],
    ),
    (
        "spec/load-a-string",
        spec(text(spec_text(load="x"))),
        ["services[0].load: must be a mapping, not str"],
    ),
    (
        "spec/expect-a-list",
        spec(text(spec_text(expect="[hpa]"))),
        ["services[0].expect: must be a mapping, not list"],
    ),
    (
        "spec/timeout-nan",
        spec(text(spec_text(load="{path: /, users: 1, timeout: .nan}"))),
        ["services[0].load.timeout", "at most 24h"],
    ),
    (
        "spec/ready-within-inf",
        spec(text(spec_text(expect="{self_healing: {ready_within: .inf, max_error_rate: 1%}}"))),
        ["services[0].expect.self_healing.ready_within", "at most 24h"],
    ),
    (
        "spec/error-rate-nan",
        spec(text(spec_text(expect="{self_healing: {ready_within: 5s, max_error_rate: .nan}}"))),
        ["services[0].expect.self_healing.max_error_rate", "between 0% and 100%"],
    ),
    (
        "spec/absurd-cpu-users",
        spec(text(spec_text(load="{path: /, users: 1, cpu_users: 1000000000000}"))),
        ["services[0].load.cpu_users", "from 1 to 100000"],
    ),
    (
        "spec/slo-out-of-range",
        spec(text(spec_text(slo="{error_rate: 2}"))),
        ["services[0].slo", "max_error_rate=2"],
    ),
    (
        "spec/manifests-missing",
        spec(text(spec_text(manifests="nope"))),
        ["services[0].manifests", "{tmp}/nope"],
    ),
    (
        "spec/typo-in-a-key",
        spec(text(spec_text(expect="{self_heal: {ready_within: 5s, max_error_rate: 1%}}"))),
        ["services[0].expect.self_heal: unknown key (did you mean 'self_healing'?)"],
    ),
    (
        "spec/pytest-option-missing-file",
        pytest_run("--resilience-spec={tmp}/nope.yaml"),
        ["{tmp}/nope.yaml", "does not exist"],
    ),
    ("spec/schema-into-a-directory", cli("schema", "-o", "{tmp}"), ["{tmp}", "directory"]),
    (
        "spec/schema-into-a-missing-folder",
        cli("schema", "-o", "{tmp}/no/such/schema.json"),
        ["{tmp}/no/such", "does not exist"],
    ),
    # --- Chaos Toolkit experiments
    (
        "experiment/missing",
        cli("chaos", "run", "{tmp}/nope.yaml"),
        ["{tmp}/nope.yaml", "does not exist"],
    ),
    (
        "experiment/fifo",
        cli("chaos", "run", "{tmp}/exp.json", files={"exp.json": fifo}),
        ["{tmp}/exp.json", "not a regular file"],
    ),
    ("experiment/directory", experiment(directory), ["{tmp}/experiment.yaml", "is a directory"]),
    ("experiment/binary", experiment(BINARY), ["{tmp}/experiment.yaml", "not UTF-8"]),
    (
        "experiment/utf16-json",
        experiment(utf16(json.dumps(EXPERIMENT)), "experiment.json"),
        ["{tmp}/experiment.json", "not UTF-8"],
    ),
    ("experiment/empty", experiment(EMPTY), ["{tmp}/experiment.yaml", "not NoneType"]),
    (
        "experiment/oversized",
        experiment(oversized, "experiment.json"),
        ["{tmp}/experiment.json", "more than"],
    ),
    (
        "experiment/duplicate-json-key",
        experiment(text('{"title": "a", "title": "b"}'), "experiment.json"),
        ["{tmp}/experiment.json", "the key 'title' appears twice"],
    ),
    ("experiment/alias-bomb", experiment(ALIAS_BOMB), ["{tmp}/experiment.yaml", "expand to"]),
    (
        "experiment/not-json",
        experiment(text('{"title": '), "experiment.json"),
        ["{tmp}/experiment.json", "not valid JSON"],
    ),
    ("experiment/a-list", experiment(text("- a\n")), ["{tmp}/experiment.yaml", "not list"]),
    (
        "experiment/method-a-string",
        experiment(experiment_yaml(method="x")),
        ["{tmp}/experiment.yaml", "method"],
    ),
    (
        "experiment/method-of-strings",
        experiment(experiment_yaml(method=["x"])),
        ["{tmp}/experiment.yaml", "method"],
    ),
    (
        "experiment/hypothesis-a-string",
        experiment(experiment_yaml(**{"steady-state-hypothesis": "x"})),
        ["{tmp}/experiment.yaml", "steady-state-hypothesis"],
    ),
    (
        "experiment/extensions-a-string",
        experiment(experiment_yaml(extensions="x")),
        ["{tmp}/experiment.yaml", "extensions"],
    ),
    (
        "experiment/timeout-inf",
        experiment(extension(timeout_s=float("inf"))),
        ["{tmp}/experiment.yaml", "kube-harness: timeout_s", "at most 24h"],
    ),
    (
        "experiment/error-rate-nan",
        experiment(extension(max_error_rate=float("nan"))),
        ["{tmp}/experiment.yaml", "kube-harness: max_error_rate"],
    ),
    (
        "experiment/absurd-warm-up",
        experiment(extension(warm_up_s=10**12)),
        ["{tmp}/experiment.yaml", "kube-harness: warm_up_s", "at most 24h"],
    ),
    (
        "experiment/unknown-extension-key",
        experiment(extension(timeout=5)),
        ["{tmp}/experiment.yaml", "unknown key 'timeout'"],
    ),
    (
        "experiment/may-fail-unknown",
        experiment(extension(may_fail=["nope"])),
        ["{tmp}/experiment.yaml", "may_fail names no activity: nope"],
    ),
    # --- SLO files
    (
        "slo/missing",
        cli(*LOAD_RUN, "--slo", "{tmp}/nope.yaml"),
        ["{tmp}/nope.yaml", "does not exist"],
    ),
    (
        "slo/fifo",
        cli(*LOAD_RUN, "--slo", "{tmp}/slo.yaml", files={"slo.yaml": fifo}),
        ["{tmp}/slo.yaml", "not a regular file"],
    ),
    ("slo/directory", slo(directory), ["{tmp}/slo.yaml", "is a directory"]),
    ("slo/utf16", slo(utf16("error_rate: 1%\n")), ["{tmp}/slo.yaml", "not UTF-8"]),
    ("slo/empty", slo(EMPTY), ["{tmp}/slo.yaml", "expected a mapping of limits"]),
    ("slo/a-list", slo(text("- 1%\n")), ["{tmp}/slo.yaml", "got list"]),
    ("slo/no-limits", slo(text("{}\n")), ["{tmp}/slo.yaml", "no limits"]),
    ("slo/error-rate-2", slo(text("error_rate: 2\n")), ["{tmp}/slo.yaml", "max_error_rate=2"]),
    ("slo/negative-rate", slo(text("error_rate: -5%\n")), ["{tmp}/slo.yaml", "max_error_rate"]),
    ("slo/p95-inf", slo(text("p95: .inf\n")), ["{tmp}/slo.yaml", "max_p95_ms=inf"]),
    ("slo/p99-a-word", slo(text("p99: fast\n")), ["{tmp}/slo.yaml", "p99: cannot read 'fast'"]),
    ("slo/min-rps-bool", slo(text("min_rps: yes\n")), ["{tmp}/slo.yaml", "min_rps"]),
    ("slo/unknown-key", slo(text("p50: 1s\n")), ["{tmp}/slo.yaml", "unknown SLO key(s) p50"]),
    (
        "slo/duplicate-key",
        slo(text("p95: 1s\np95: 2s\n")),
        ["{tmp}/slo.yaml", "the key 'p95' appears twice"],
    ),
    (
        "slo/endpoints-a-string",
        slo(text("endpoints: x\n")),
        ["{tmp}/slo.yaml", "endpoints must map"],
    ),
    (
        "slo/endpoint-limits-a-string",
        slo(text("endpoints: {/work: fast}\n")),
        ["{tmp}/slo.yaml: endpoints: /work", "expected a mapping"],
    ),
    # --- load shapes
    (
        "shape/unknown-kind",
        cli(*LOAD_RUN, "--shape", "wave:users=1"),
        ["load shape kind 'wave'", "constant, ramp, step, spike"],
    ),
    ("shape/empty", cli(*LOAD_RUN, "--shape", ""), ["load shape kind ''"]),
    (
        "shape/absurd-users",
        cli(*LOAD_RUN, "--shape", "constant:users=1000000000000,seconds=30"),
        ["users=1000000000000"],
    ),
    ("shape/not-name-value", call(parse_shape, "constant:users"), ["'users' is not name=value"]),
    ("shape/missing-parameter", call(parse_shape, "constant:users=10"), ["missing", "seconds"]),
    (
        "shape/unknown-parameter",
        call(parse_shape, "constant:users=1,seconds=3,color=red"),
        ["unknown parameter(s) color"],
    ),
    (
        "shape/duplicate-parameter",
        call(parse_shape, "constant:users=10,users=20,seconds=5"),
        ["users", "twice"],
    ),
    ("shape/zero-users", call(parse_shape, "constant:users=0,seconds=3"), ["users=0"]),
    ("shape/nan-users", call(parse_shape, "constant:users=nan,seconds=3"), ["users=nan"]),
    ("shape/inf-seconds", call(parse_shape, "constant:users=1,seconds=inf"), ["seconds=inf"]),
    (
        "shape/absurd-seconds",
        call(parse_shape, "constant:users=1,seconds=1e12"),
        ["constant load shape lasts 1e+12s", "24h"],
    ),
    (
        "shape/absurd-steps",
        call(parse_shape, "step:step_users=1,step_time=1,steps=1000000000000"),
        ["steps"],
    ),
    ("shape/negative-ramp", call(parse_shape, "ramp:users=-1,ramp_time=9"), ["users=-1"]),
    (
        "shape/spike-below-users",
        call(parse_shape, "spike:users=9,spike_users=5,spike_at=1,spike_time=1,seconds=9"),
        ["spike_users=5", "spike_users > users"],
    ),
    (
        "shape/users-a-string",
        call(shape_from_spec, {"kind": "ramp", "users": "10", "ramp_time": 5}),
        ["users='10'"],
    ),
    ("shape/not-a-mapping", call(shape_from_spec, "constant"), ["load shape", "'constant'"]),
    # --- command-line arguments
    (
        "cli/negative-workers",
        cli("cluster", "up", *EXISTING, "--workers", "-5", files=VALID_KUBECONFIG),
        ["workers", "-5"],
    ),
    ("cli/workers-not-a-number", cli("cluster", "up", "--workers", "x"), ["--workers", "'x'"]),
    ("cli/unknown-provider", cli("cluster", "up", "--provider", "minikube"), ["'minikube'"]),
    (
        "cli/unknown-provider-in-environment",
        cli("cluster", "up", env={"HARNESS_PROVIDER": "minikube"}),
        ["HARNESS_PROVIDER", "'minikube'"],
    ),
    ("cli/unknown-command", cli("deploy"), ["'deploy'"]),
    (
        "cli/load-url-not-http",
        cli("load", "run", "--url", "ftp://127.0.0.1/"),
        ["'ftp://127.0.0.1'", "http(s)"],
    ),
    ("cli/load-time-limit-nan", cli(*LOAD_RUN, "--time-limit", "nan"), ["time_limit=nan"]),
    ("cli/load-env-not-name-value", cli(*LOAD_RUN, "--env", "QUIET"), ["--env 'QUIET'"]),
    (
        "cli/load-locustfile-missing",
        cli(*LOAD_RUN, "--locustfile", "{tmp}/nope.py"),
        ["locustfile {tmp}/nope.py does not exist"],
    ),
    (
        "cli/local-network-everything",
        cli(*LOAD_RUN, "--local-network", "0.0.0.0/0"),
        ["0.0.0.0/0", "not a private range"],
    ),
    (
        "cli/local-network-not-a-cidr",
        cli(*LOAD_RUN, "--local-network", "ten.0.0.0/8"),
        ["local_networks", "'ten.0.0.0/8'"],
    ),
    (
        "cli/image-archive-a-directory",
        cli("images", "load", "{tmp}/image.tar", files={"image.tar": directory}),
        ["{tmp}/image.tar"],
    ),
    ("cli/init-manifests-missing", cli("init", "{tmp}/nope"), ["{tmp}/nope"]),
    (
        "cli/init-over-an-existing-file",
        cli("init", str(PLAIN_MANIFESTS), "-o", "{tmp}/spec.yaml", files={"spec.yaml": EMPTY}),
        ["{tmp}/spec.yaml", "--force"],
    ),
    (
        "cli/active-cluster-record-a-fifo",
        cli("cluster", "status", files={"cache/active-cluster.json": fifo}),
        ["{tmp}/cache/active-cluster.json"],
    ),
    (
        "cli/active-cluster-record-a-list",
        cli("cluster", "status", files={"cache/active-cluster.json": text("[]")}),
        ["{tmp}/cache/active-cluster.json", "is damaged"],
    ),
    ("cli/pytest-repeat-zero", pytest_run("--repeat=0"), ["--repeat"]),
    ("cli/pytest-negative-cluster-workers", pytest_run("--cluster-workers=-5"), ["-5"]),
    ("cli/pytest-negative-load-workers", pytest_run("--load-workers=-3"), ["--load-workers", "-3"]),
    # --- kubeconfigs of the existing provider
    (
        "kubeconfig/missing",
        cli("cluster", "kubeconfig", *EXISTING),
        ["kubeconfig {tmp}/kubeconfig does not exist"],
    ),
    (
        "kubeconfig/directory",
        cli("cluster", "status", *EXISTING, files={"kubeconfig": directory}),
        ["kubeconfig {tmp}/kubeconfig is a directory"],
    ),
    (
        "kubeconfig/fifo",
        cli("cluster", "status", *EXISTING, files={"kubeconfig": fifo}),
        ["kubeconfig {tmp}/kubeconfig is not a regular file"],
    ),
    (
        "kubeconfig/dev-zero",
        cli("cluster", "status", *EXISTING, files={"kubeconfig": dev_zero}),
        ["kubeconfig {tmp}/kubeconfig is not a regular file"],
    ),
    ("kubeconfig/binary", kubeconfig(BINARY), ["kubeconfig {tmp}/kubeconfig", "not UTF-8"]),
    ("kubeconfig/empty", kubeconfig(EMPTY), ["kubeconfig {tmp}/kubeconfig has no context"]),
    ("kubeconfig/not-yaml", kubeconfig(text("contexts: [\n")), ["{tmp}/kubeconfig", "YAML"]),
    ("kubeconfig/alias-bomb", kubeconfig(ALIAS_BOMB), ["{tmp}/kubeconfig", "expand to"]),
    (
        "kubeconfig/duplicate-key",
        kubeconfig(text("current-context: a\ncurrent-context: b\n")),
        ["{tmp}/kubeconfig", "the key 'current-context' appears twice"],
    ),
    (
        "kubeconfig/contexts-a-number",
        kubeconfig(kubeconfig_yaml(contexts=5)),
        ["kubeconfig {tmp}/kubeconfig has no context"],
    ),
    (
        "kubeconfig/unknown-context",
        cli("cluster", "status", *EXISTING, "--context", "prod", files=VALID_KUBECONFIG),
        ["{tmp}/kubeconfig has no context 'prod'", "ctx", "--context"],
    ),
    (
        "kubeconfig/no-current-context",
        kubeconfig(kubeconfig_yaml(**{"current-context": None})),
        ["{tmp}/kubeconfig", "current-context"],
    ),
    # --- report folders
    ("report/run-folder-missing", cli("report", "{tmp}/nope"), ["{tmp}/nope is not a run folder"]),
    (
        "report/run-folder-a-fifo",
        cli("report", "{tmp}/run", files={"run": fifo}),
        ["{tmp}/run is not a run folder"],
    ),
    (
        "report/run-folder-a-file",
        cli("report", "{tmp}/run", files={"run": EMPTY}),
        ["{tmp}/run is not a run folder"],
    ),
    (
        "report/result-a-fifo",
        report({f"{TEST}/result.json": fifo}),
        ["t1: result.json unreadable", "verdicts not shown"],
    ),
    (
        "report/result-dev-zero",
        report({f"{TEST}/result.json": dev_zero}, process=True),
        ["t1: result.json unreadable", "verdicts not shown"],
    ),
    (
        "report/result-binary",
        report({f"{TEST}/result.json": BINARY}),
        ["t1: result.json unreadable", "verdicts not shown"],
    ),
    (
        "report/result-a-directory",
        report({f"{TEST}/result.json": directory}),
        ["t1: result.json unreadable", "verdicts not shown"],
    ),
    (
        "report/result-a-list",
        report({f"{TEST}/result.json": text("[]")}),
        ["t1: result.json is not a JSON object"],
    ),
    (
        "report/verdicts-a-string",
        report({f"{TEST}/result.json": text('{"verdicts": "x"}')}),
        ["t1: result.json: `verdicts` is not a list"],
    ),
    (
        "report/timeline-a-fifo",
        report({f"{TEST}/timeline.jsonl": fifo}),
        ["t1: timeline.jsonl unreadable"],
    ),
    (
        "report/load-record-a-fifo",
        report({f"{TEST}/load-1/load-events.jsonl": fifo}),
        ["t1: load-1/load-events.jsonl unreadable"],
    ),
    (
        "report/load-record-dev-zero",
        report({f"{TEST}/load-1/load-events.jsonl": dev_zero}, process=True),
        ["t1: load-1/load-events.jsonl unreadable"],
    ),
    (
        "report/junit-a-fifo",
        report({"junit.xml": fifo}, "--junit-xml", "{tmp}/junit.xml"),
        ["JUnit XML junit.xml unreadable"],
    ),
    (
        "report/junit-not-xml",
        report({"junit.xml": text("<testsuite")}, "--junit-xml", "{tmp}/junit.xml"),
        ["JUnit XML junit.xml unreadable"],
    ),
    (
        "report/history-entry-a-fifo",
        report({"reports/history/old.json": fifo}),
        ["history {tmp}/reports/history/old.json: unreadable"],
    ),
    # --- run ids
    ("run_id/parent-folder", run_id("../x"), ["'../x' is not usable"]),
    ("run_id/slash-from-environment", run_id(env="a/b"), ["'a/b' is not usable"]),
    ("run_id/too-long", run_id("a" * 41), [f"{'a' * 41!r} is not usable"]),
    ("run_id/trailing-newline", run_id("nightly\n"), ["'nightly\\n' is not usable"]),
    ("run_id/pytest-option", pytest_run("--run-id=../x"), ["run id '../x' is not usable"]),
    (
        "run_id/pytest-environment",
        pytest_run(env={RUN_ID_ENV: ".."}),
        ["run id '..' is not usable"],
    ),
    # --- names
    (
        "names/cluster-parent-folder",
        cli("cluster", "up", *EXISTING, "--name", "../x", files=VALID_KUBECONFIG),
        ["cluster name '../x' is not valid"],
    ),
    ("names/cluster-with-slash", call(ClusterOptions, name="a/b"), ["cluster name 'a/b'"]),
    (
        "names/cluster-too-long",
        cli("cluster", "up", *EXISTING, "--name", "k" * 41, files=VALID_KUBECONFIG),
        [f"cluster name {'k' * 41!r} is not valid"],
    ),
    ("names/pytest-cluster-name", pytest_run("--cluster-name=../x"), ["cluster name '../x'"]),
    (
        "names/pytest-kinds-default",
        cli("cluster", "up", *EXISTING, "--name", "pytest-kind", files=VALID_KUBECONFIG),
        ["cluster name 'pytest-kind' is pytest-kind's default", "choose another name"],
    ),
    ("names/service-parent-folder", spec(text(spec_text(name="'..'"))), ["services[0].name"]),
    ("names/service-too-long", spec(text(spec_text(name="s" * 64))), ["services[0].name"]),
    (
        "names/container-with-slash",
        spec(text(spec_text(container="web/x"))),
        ["services[0].container", "'web/x'"],
    ),
    (
        "names/deployment-too-long",
        spec(text(spec_text(deployment="d" * 254))),
        ["services[0].deployment"],
    ),
    (
        "names/service-twice",
        spec(text(spec_text() + spec_text().split("services:\n", 1)[1])),
        ["services: names must be unique", "'web'"],
    ),
]


# --------------------------------------------------------------------------- the checks


@pytest.fixture(autouse=True)
def nothing_outside_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "cache"))
    for name in ("HARNESS_PROVIDER", RUN_ID_ENV, "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def release_fifos(folder: Path) -> None:
    """Open every FIFO under `folder` for writing and close it: a reader stuck on one ends."""
    for path in folder.rglob("*"):
        if path.is_fifo():
            with suppress(OSError):  # no reader waits on it
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def guarded(call: Callable[[], object], tmp_path: Path) -> tuple[object, BaseException | None]:
    """What `call` returned or raised; the test fails if it takes longer than TIMEOUT_S."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # judged by the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT_S)
    if thread.is_alive():
        release_fifos(tmp_path)
        pytest.fail(f"hung for more than {TIMEOUT_S}s")
    return outcome.get("value"), outcome.get("error")  # type: ignore[return-value]


@pytest.mark.parametrize(("case_id", "build", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error(case_id, build, fragments, tmp_path):
    value, error = guarded(build(tmp_path), tmp_path)
    expected = [fragment.format(tmp=tmp_path) for fragment in fragments]
    if isinstance(value, Exited):
        output = value.output
        assert value.code == value.expected, f"exit code {value.code}:\n{output}"
        assert not TRACEBACK.search(output), output
        if value.expected:  # an error: one, with its fix (argparse's: the usage line)
            assert len(re.findall(r"(?m)^(?:harness: error:|ERROR)|: error: ", output)) == 1, output
            assert "fix: " in output or "usage: " in output, output
        else:  # a partial report: one line on what it could not read
            assert len(re.findall(r"(?m)^\[harness\] report: ", output)) == 1, output
        said = output
    elif isinstance(error, InvalidConfiguration):
        assert error.fix, f"no fix: {error.message}"
        said = str(error)
    else:
        raise AssertionError(
            f"bad input accepted: returned {value!r}" if error is None else f"raised {error!r}"
        ) from error
    if "problem(s)" in said:  # a spec lists every problem: this input makes one
        assert " has 1 problem(s)" in said, said
    for fragment in expected:
        assert fragment in said, f"{fragment!r} not in:\n{said}"


def test_the_table_covers_every_entry_point():
    assert len(CASES) >= 60
    ids = [case_id for case_id, _, _ in CASES]
    assert len(set(ids)) == len(ids), "case ids repeat"
    categories = {case_id.split("/")[0] for case_id in ids}
    assert categories == set(CATEGORIES), categories ^ set(CATEGORIES)
