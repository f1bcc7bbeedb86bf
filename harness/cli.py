"""The `harness` command: clusters, doctor, and the subcommands of other parts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import doctor
from harness.cluster import (
    CHOICES,
    ClusterOptions,
    bring_up,
    build,
    delete_cluster,
    kind_prepare,
    make_provider,
    select_provider,
)
from harness.cluster import active as active_cluster
from harness.cluster.provider import DEFAULT_CLUSTER_NAME, ClusterProvider
from harness.errors import HarnessError, InvalidConfiguration
from harness.interrupt import Terminated, terminate_as_interrupt
from harness.load import cli as load_cli
from harness.progress import say


def _cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--provider",
        choices=CHOICES,
        default=None,
        help="default: the active cluster's, else $HARNESS_PROVIDER, else detected",
    )
    parser.add_argument(
        "--name", default=None, help=f"cluster name (default {DEFAULT_CLUSTER_NAME})"
    )
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig to write (kind, local) or read (existing)",
    )
    parser.add_argument("--context", default=None, help="kubeconfig context (existing)")
    parser.add_argument("--workers", type=int, default=0, help="worker nodes (kind)")


def _provider(args: argparse.Namespace, *, for_existing_cluster: bool) -> ClusterProvider:
    """The provider named by the flags, else the active cluster's (for commands on a cluster)."""
    remembered = active_cluster.read() if for_existing_cluster else None
    name = args.name or (remembered.name if remembered else DEFAULT_CLUSTER_NAME)
    choice = args.provider
    if choice in (None, "auto") and remembered and remembered.name == name:
        choice = remembered.provider
    selection = select_provider(choice, kubeconfig=args.kubeconfig)
    options = ClusterOptions(
        name=name, workers=args.workers, kubeconfig=args.kubeconfig, context=args.context
    )
    return make_provider(selection.name, options)


def cmd_cluster_up(args: argparse.Namespace) -> int:
    provider = _provider(args, for_existing_cluster=False)
    bring_up(provider)
    say(f"cluster {provider.options.name} ({provider.name}) is Ready")
    print(f"export KUBECONFIG={provider.kubeconfig()}")
    return 0


def cmd_cluster_down(args: argparse.Namespace) -> int:
    delete_cluster(_provider(args, for_existing_cluster=True))
    return 0


def cmd_cluster_status(args: argparse.Namespace) -> int:
    provider = _provider(args, for_existing_cluster=True)
    try:
        provider.wait_ready(timeout=10)
    except HarnessError as exc:
        print(f"{provider.options.name} ({provider.name}): not ready: {exc.message}")
        return 1
    print(f"{provider.options.name} ({provider.name}): Ready, kubeconfig {provider.kubeconfig()}")
    return 0


def cmd_cluster_kubeconfig(args: argparse.Namespace) -> int:
    print(_provider(args, for_existing_cluster=True).kubeconfig())
    return 0


def cmd_cluster_logs(args: argparse.Namespace) -> int:
    provider = _provider(args, for_existing_cluster=True)
    for path in provider.collect_logs(args.dest):
        if args.dest_only:
            print(path)
            continue
        print(f"===== {path.relative_to(args.dest)}")
        print(path.read_text(errors="replace")[-args.tail_bytes :])
    return 0


def cmd_cluster_build(args: argparse.Namespace) -> int:
    build.build_all(args.components or None)
    return 0


def _active_provider(
    what: str = "to load images into",
    fix: str = "run `harness cluster up` first (or pass --no-load to only build)",
    *,
    allow_chaos: bool = False,
) -> ClusterProvider:
    remembered = active_cluster.read()
    if remembered is None:
        raise InvalidConfiguration(f"no active cluster {what}", fix=fix)
    options = ClusterOptions(
        name=remembered.name,
        kubeconfig=Path(remembered.kubeconfig),
        context=remembered.context,
        allow_chaos=allow_chaos,
    )
    return make_provider(remembered.provider, options)


def cmd_images_build(args: argparse.Namespace) -> int:
    from harness.images.demo import DEMO_VERSIONS, build_demo_images

    archives = build_demo_images(args.versions or DEMO_VERSIONS)
    provider = None if args.no_load else _active_provider()
    for archive in archives:
        print(archive)
        if provider is not None:
            provider.load_image(archive)
    return 0


def cmd_images_load(args: argparse.Namespace) -> int:
    for archive in args.archives:  # before the cluster: what was given is checked first
        if not archive.is_file():
            state = "is not a file" if archive.exists() else "does not exist"
            raise InvalidConfiguration(
                f"image archive {archive} {state}",
                fix="give the path of an OCI or docker archive (.tar)",
            )
    provider = _active_provider()
    for archive in args.archives:
        provider.load_image(archive)
    return 0


def cmd_chaos_run(args: argparse.Namespace) -> int:
    """Validate, then run one experiment on the active cluster as the pytest item the suite
    makes of it: the same namespace, deploy, timeline, load, verdicts and teardown. pytest's
    exit code: 1 when a verdict failed."""
    from harness.chaos.experiment import (
        experiment_service,
        load_experiment,
        refuse_beyond_namespace,
        unsupported_activities,
        validate_experiment,
    )
    from harness.plugin.collection import EXPERIMENT_SUFFIXES
    from harness.plugin.shared import loaded_by_entry_point
    from harness.scenario import read_spec, spec_path

    experiment = load_experiment(args.file)
    settings = validate_experiment(experiment, args.file)
    if args.file.suffix not in EXPERIMENT_SUFFIXES:
        raise InvalidConfiguration(
            f"experiment {args.file} is not named *{', *'.join(EXPERIMENT_SUFFIXES)}",
            fix="rename it: pytest collects experiments by these suffixes",
        )
    spec = spec_path(str(args.spec) if args.spec else None, Path.cwd()).resolve()
    experiment_service(read_spec(str(spec), Path.cwd()), settings, args.service)
    provider = _active_provider(
        "to run the experiment on",
        fix="run `harness cluster up` first",
        allow_chaos=args.allow_chaos_on_existing,
    )
    refuse_beyond_namespace(settings, provider)  # before anything is deployed
    if unsupported := unsupported_activities(experiment, provider):
        raise InvalidConfiguration(
            f"experiment {args.file} cannot run on the active cluster "
            f"{provider.options.name}: " + "; ".join(unsupported),
            fix="bring up a cluster that can (`harness cluster up --provider kind`)",
        )
    try:  # the active cluster is used as it is, never created or started here
        provider.wait_ready(timeout=10)
    except HarnessError as exc:
        raise InvalidConfiguration(
            f"the active cluster {provider.options.name} ({provider.name}) is not ready: "
            f"{exc.message}",
            fix="bring it up again with `harness cluster up`",
        ) from None
    arguments = [
        str(args.file),
        f"--rootdir={Path.cwd()}",  # where the user stands, not where the file lies
        "-p",
        "no:cacheprovider",
        f"--resilience-spec={spec}",
        "--no-builtin-suite",
        f"--cluster-provider={provider.name}",
        f"--cluster-name={provider.options.name}",
        f"--kubeconfig={provider.kubeconfig()}",
        "--keep-cluster",  # the active cluster is the user's to take down
        f"--reports-dir={args.reports_dir}",
    ]
    if not loaded_by_entry_point():  # a bare checkout: its conftest.py loads the plugin
        arguments[1:1] = ["-p", "harness.plugin"]
    if provider.options.context:
        arguments.append(f"--cluster-context={provider.options.context}")
    if args.service:
        arguments.append(f"--experiment-service={args.service}")
    if args.allow_chaos_on_existing:
        arguments.append("--allow-chaos-on-existing")
    return _pytest(arguments, nothing_collected=f"{args.file} made no test item")


def cmd_chaos_revert(args: argparse.Namespace) -> int:
    """Revert every pending fault of the active cluster; 1 when something of ours is left."""
    from harness.chaos.faults import leftovers, revert_all
    from harness.chaos.ledger import clusters_with_faults
    from harness.kube import Kube

    recorded = clusters_with_faults()
    provider = _active_provider(
        "to revert faults on",
        fix=(
            f"faults are recorded for cluster(s) {', '.join(recorded)}: bring that cluster "
            "back (`harness cluster up --name NAME`) and run this again"
            if recorded
            else "nothing to revert without a cluster"
        ),
    )
    kube = Kube(provider.kubeconfig(), provider.options.context)
    try:
        for injected in revert_all(provider, kube):
            print(f"reverted {injected.describe()}")
        left = leftovers(provider, kube)
    finally:
        kube.close()
    for line in left:
        print(f"still in place: {line}", file=sys.stderr)
    return 1 if left else 0


def _register_chaos(commands: argparse._SubParsersAction) -> None:
    chaos = commands.add_parser("chaos", help="run chaos experiments and revert their faults")
    actions = chaos.add_subparsers(dest="action", required=True)
    text = (
        "run a Chaos Toolkit experiment against the spec's service on the active cluster, "
        "in a fresh namespace, under steady load, as the pytest item the suite makes of it; "
        "2 when the experiment cannot run there, else pytest's exit code (1: a verdict failed)"
    )
    run = actions.add_parser("run", help=text, description=text)
    run.add_argument("file", type=Path, metavar="FILE", help="experiment (.yaml, .yml, .json)")
    run.add_argument(
        "--service",
        default=None,
        help="service of the spec (default: the experiment's kube-harness extension, "
        "else the spec's first)",
    )
    run.add_argument(
        "--spec",
        type=Path,
        default=None,
        help="resilience spec (default: scenarios/demo-service.spec.yaml)",
    )
    run.add_argument(
        "--reports-dir",
        type=Path,
        default=Path("reports"),
        help="reports go to DIR/<run-id>/ (default: reports)",
    )
    run.add_argument(
        "--allow-chaos-on-existing",
        action="store_true",
        help="allow faults when the active cluster is an existing one (harness namespace only)",
    )
    run.set_defaults(func=cmd_chaos_run)
    text = "revert every fault still pending on the active cluster and list what is left"
    revert = actions.add_parser("revert", help=text, description=text)
    revert.set_defaults(func=cmd_chaos_revert)


def cmd_run(args: argparse.Namespace) -> int:
    """pytest with --resilience-spec=SPEC, in a process of its own; its exit code."""
    from harness.scenario import read_spec

    if not args.spec.is_file():
        state = "is a directory" if args.spec.is_dir() else "does not exist"
        raise InvalidConfiguration(
            f"resilience spec {args.spec} {state}",
            fix="give your service's spec file; `harness init MANIFESTS` drafts one",
        )
    # Every problem of the spec, and what its manifests contradict, before anything starts.
    read_spec(str(args.spec), Path.cwd())
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    return _pytest(
        [f"--resilience-spec={args.spec}", *extra],
        nothing_collected="the -k/-m selection or the paths given match nothing, or no "
        "service of the spec makes the promise of the scenarios they name (those are "
        f"deselected); `harness run {args.spec} -- --collect-only -q` lists what there is",
    )


def _pytest(arguments: list[str], *, nothing_collected: str) -> int:
    """pytest with `arguments`, in a process of its own; its exit code (5, nothing
    collected, said with `nothing_collected`)."""
    from pytest import ExitCode

    with subprocess.Popen([sys.executable, "-m", "pytest", *arguments]) as process:
        while process.returncode is None:
            # Ctrl-C reaches pytest too: it tears down (namespaces, cluster), then exits.
            # A SIGTERM sent to this process alone is passed on, for pytest to do the same.
            try:
                process.wait()
            except Terminated:
                process.terminate()
            except KeyboardInterrupt:
                pass
    if process.returncode == ExitCode.NO_TESTS_COLLECTED:
        print(f"harness: pytest collected no tests (exit 5): {nothing_collected}", file=sys.stderr)
    return process.returncode


def _register_run(commands: argparse._SubParsersAction) -> None:
    text = (
        "run the built-in scenario suite and chaos experiments against SPEC, next to the "
        "project's own tests: pytest --resilience-spec=SPEC [PYTEST_ARGS]; pytest's exit code"
    )
    run = commands.add_parser("run", help=text, description=text)
    run.add_argument("spec", type=Path, metavar="SPEC", help="the resilience spec")
    run.add_argument(
        "pytest_args",
        nargs=argparse.REMAINDER,
        metavar="-- PYTEST_ARGS",
        help="passed to pytest, e.g. -- -m hpa --cluster-provider=kind --builtin-suite-only",
    )
    run.set_defaults(func=cmd_run)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import SCREENSHOT_FILE, earlier_runs, screenshot, write_report

    if not args.run_dir.is_dir():  # write_report would create it: a typo must not
        raise InvalidConfiguration(
            f"{args.run_dir} is not a run folder",
            fix="give a folder under reports/, e.g. reports/latest",
        )
    history = (
        args.history
        if args.history is not None
        else earlier_runs(args.run_dir.resolve().parent, args.run_dir)
    )
    files = write_report(args.run_dir, history=history, junit_xml=args.junit_xml)
    if args.screenshot:
        screenshot(files.html, files.directory / SCREENSHOT_FILE)
    for problem in files.problems:
        say(f"report: {problem}")
    print(f"{files.status}: {files.html}\n{files.markdown}\n{files.json}")
    return 0


def _register_report(commands: argparse._SubParsersAction) -> None:
    text = "write index.html, summary.md and results.json for a run folder"
    report = commands.add_parser("report", help=text, description=text)
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="e.g. reports/latest")
    report.add_argument(
        "--junit-xml", type=Path, default=None, help="pytest's JUnit XML of the run"
    )
    report.add_argument(
        "--history",
        type=Path,
        nargs="*",
        default=None,
        help="earlier runs' history entries or results.json (default: the history/ folder "
        "and every other run beside RUN_DIR)",
    )
    report.add_argument(
        "--screenshot", action="store_true", help="also save index.png (headless Chromium)"
    )
    report.set_defaults(func=cmd_report)


def cmd_init(args: argparse.Namespace) -> int:
    from harness.draft import write_draft

    out = write_draft(args.path, args.output, force=args.force)
    print(f"wrote {out}: a draft spec to review (see its comments and TODOs)")
    return 0


def _register_init(commands: argparse._SubParsersAction) -> None:
    text = (
        "write a draft resilience spec for a service's manifests (a kustomization, a Helm "
        "chart, a manifest file or a folder of them), each value commented with how it was "
        "derived"
    )
    init = commands.add_parser("init", help=text, description=text)
    init.add_argument("path", type=Path, metavar="PATH", help="the service's manifests")
    init.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("resilience.yaml"),
        help="where to write the draft (default: resilience.yaml)",
    )
    init.add_argument("--force", action="store_true", help="overwrite an existing output file")
    init.set_defaults(func=cmd_init)


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.spec import spec_schema

    text = json.dumps(spec_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        if not args.output.parent.is_dir():
            problem = f"its folder {args.output.parent} does not exist"
        elif args.output.is_dir():
            problem = "it is a directory"
        else:
            problem = None
        if problem:
            raise InvalidConfiguration(
                f"cannot write the schema to {args.output}: {problem}",
                fix="give a file path in a folder that exists (-o docs/spec.schema.json)",
            )
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


def _register_schema(commands: argparse._SubParsersAction) -> None:
    text = (
        "print the resilience spec's JSON Schema, generated from the code that validates "
        "specs (for editors: `# yaml-language-server: $schema=FILE` in the spec)"
    )
    schema = commands.add_parser("schema", help=text, description=text)
    schema.add_argument("-o", "--output", type=Path, help="write it to this file")
    schema.set_defaults(func=cmd_schema)


def cmd_kind_prepare(args: argparse.Namespace) -> int:
    changes = kind_prepare.plan(
        node_image=not args.no_node_image, replace_default_runtime=args.replace_default_runtime
    )
    for change in changes:
        print(f"- {change.what}\n    because {change.why}")
    if args.dry_run:
        print("(dry run: nothing changed)")
        return 0
    kind_prepare.prepare(changes)
    return 0


def cmd_kind_unprepare(args: argparse.Namespace) -> int:
    if args.dry_run:
        held = kind_prepare.held()
        print("\n".join(f"- put back {target}" for target in held) or "nothing to put back")
        print("(dry run: nothing changed)")
        return 0
    for done in kind_prepare.unprepare(force=args.force) or ["nothing to put back"]:
        print(f"- {done}")
    return 0


def _register_kind(commands: argparse._SubParsersAction) -> None:
    kind = commands.add_parser("kind", help="make this machine able to run kind")
    actions = kind.add_subparsers(dest="action", required=True)
    text = (
        "install and start Docker (with a runc wrapper where privileged containers fail), "
        "build kind and an offline node image; says each change before making it"
    )
    prepare = actions.add_parser("prepare", help=text, description=text)
    prepare.add_argument("--dry-run", action="store_true", help="list the changes only")
    prepare.add_argument(
        "--no-node-image",
        action="store_true",
        help="skip the offline node image (a registry gives kind its stock image)",
    )
    prepare.add_argument(
        "--replace-default-runtime",
        action="store_true",
        help="make the runc wrapper Docker's default even where another default is configured",
    )
    prepare.set_defaults(func=cmd_kind_prepare)
    text = (
        "put back what `harness kind prepare` changed: daemon.json, the runc wrapper, a "
        "Docker daemon it started, IPv4 forwarding (packages stay installed)"
    )
    unprepare = actions.add_parser("unprepare", help=text, description=text)
    unprepare.add_argument("--dry-run", action="store_true", help="list what would be put back")
    unprepare.add_argument(
        "--force", action="store_true", help="restart or stop Docker even under its containers"
    )
    unprepare.set_defaults(func=cmd_kind_unprepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness", description="kube-harness: clusters and checks for Kubernetes services"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    cluster = commands.add_parser("cluster", help="create, inspect and remove test clusters")
    actions = cluster.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("up", cmd_cluster_up, "create the cluster (or reuse a healthy one) and wait until Ready"),
        ("down", cmd_cluster_down, "remove the cluster and everything made for it"),
        ("status", cmd_cluster_status, "say whether the cluster is up and Ready"),
        ("kubeconfig", cmd_cluster_kubeconfig, "print the kubeconfig path"),
        ("logs", cmd_cluster_logs, "collect and show the provider's component logs"),
    ):
        sub = actions.add_parser(name, help=text, description=text)
        _cluster_args(sub)
        sub.set_defaults(func=func)
        if name == "logs":
            sub.add_argument("--dest", type=Path, default=Path("reports/cluster-logs"))
            sub.add_argument("--dest-only", action="store_true", help="print file names only")
            sub.add_argument("--tail-bytes", type=int, default=4000)

    text = "build (or find) the pinned Kubernetes components, cached under ~/.cache/kube-harness"
    builder = actions.add_parser("build", help=text, description=text)
    builder.add_argument("components", nargs="*", help="component names (default: all)")
    builder.set_defaults(func=cmd_cluster_build)

    images = commands.add_parser("images", help="build images offline and load them")
    image_actions = images.add_subparsers(dest="action", required=True)
    text = "build the demo service's images (OCI archives, cached) and load them"
    build_images = image_actions.add_parser("build", help=text, description=text)
    build_images.add_argument("name", choices=["demo"])
    build_images.add_argument(
        "--version",
        dest="versions",
        action="append",
        help="image version (repeatable; default: v1 and v2)",
    )
    build_images.add_argument(
        "--no-load", action="store_true", help="only build; do not load into the active cluster"
    )
    build_images.set_defaults(func=cmd_images_build)
    text = "load image archives into the active cluster (local: containerd; kind: kind load)"
    load_images = image_actions.add_parser("load", help=text, description=text)
    load_images.add_argument("archives", nargs="+", type=Path, metavar="ARCHIVE")
    load_images.set_defaults(func=cmd_images_load)

    check = commands.add_parser("doctor", help="check this machine's prerequisites per provider")
    check.add_argument("--provider", choices=CHOICES, default="auto")
    check.set_defaults(func=doctor.cmd_doctor)

    load_cli.register(commands)
    _register_run(commands)
    _register_chaos(commands)
    _register_report(commands)
    _register_kind(commands)
    _register_init(commands)
    _register_schema(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    restore_sigterm = terminate_as_interrupt()  # `kill` reverts faults and cleans up too
    try:
        return args.func(args)
    except InvalidConfiguration as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"harness: failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"harness: interrupted{f' ({exc})' if str(exc) else ''}", file=sys.stderr)
        return 130
    finally:
        restore_sigterm()


if __name__ == "__main__":
    sys.exit(main())
