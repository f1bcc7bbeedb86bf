"""Helm charts as releases: the service's chart installed, upgraded and rolled back by Helm.

Helm is built from the Go module proxy at a pinned version and cached like the cluster's
components. The harness still decides what runs: Helm calls it back as a post-renderer
(`python -m harness.helm post-render CONFIG`) that sets the test namespace, the provider's
image references, the NodePorts answering on 127.0.0.1 and the live replica counts, exactly
as for a kustomization. What Helm applies is therefore what the harness reads and judges.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.commands import run
from harness.errors import CommandFailed, InvalidConfiguration

HELM_PACKAGE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"
CHART_ARCHIVE_SUFFIXES = (".tgz", ".tar.gz")
HELM_TIMEOUT_S = 600


def is_chart(path: Path) -> bool:
    """A chart folder (with Chart.yaml) or a packaged chart (.tgz)."""
    return (path.is_dir() and (path / "Chart.yaml").is_file()) or (
        path.is_file() and path.name.endswith(CHART_ARCHIVE_SUFFIXES)
    )


def helm_path() -> Path:
    """The pinned Helm binary, built once from the module proxy."""
    from harness.cluster.build import go_program

    return go_program(HELM_PACKAGE, HELM_VERSION)


@dataclass(frozen=True)
class HelmRelease:
    """How a chart is installed: `helm install NAME CHART -f VALUES... --set K=V...`.

    Attributes:
        name: the release name.
        chart: a chart folder or .tgz.
        values: values files, in order (later ones win).
        set: `--set` values, in order.
        next: what the rollout scenarios upgrade the release to (another chart version or
            other values); the same chart and values when not given.
    """

    name: str
    chart: Path
    values: tuple[Path, ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    next: HelmRelease | None = field(default=None, compare=False)

    def upgraded(self) -> HelmRelease:
        """The release as the rollout scenarios upgrade it."""
        return self.next or self

    def chart_args(self) -> list[str]:
        args = [str(self.chart)]
        for path in self.values:
            args += ["--values", str(path)]
        for key, value in self.set:
            args += ["--set", f"{key}={value}"]
        return args


def default_kube_version() -> str:
    """The Kubernetes version the harness's own clusters run (harness/cluster/versions.yaml)."""
    from harness.cluster.build import load_versions

    return next(s.version for s in load_versions().go_sources if s.name == "kubernetes")


def template(release: HelmRelease, namespace: str | None, kube_version: str | None = None) -> str:
    """The chart rendered by `helm template` (test hooks left out), for the cluster's
    Kubernetes version: without one, Helm renders for v1.20, and a chart that picks its API
    versions by `.Capabilities.KubeVersion` would render objects no current cluster serves.

    Args:
        kube_version: the cluster's version; the harness's own clusters' by default.

    Raises:
        InvalidConfiguration: the chart does not render (a template error, a missing
            values file, a dependency not vendored).
    """
    argv = [helm_path(), "template", release.name, *release.chart_args(), "--skip-tests",
            "--kube-version", kube_version or default_kube_version()]  # fmt: skip
    if namespace:
        argv += ["--namespace", namespace]
    try:
        return run(argv, timeout=120)
    except CommandFailed as exc:
        raise InvalidConfiguration(
            f"chart {release.chart} does not render: {exc.message}",
            fix=f"run `helm template {release.name} {' '.join(release.chart_args())}` and fix "
            "what it reports (vendor dependencies with `helm dependency build`)",
        ) from None


@dataclass(frozen=True)
class PostRender:
    """What the post-renderer sets in Helm's output: the harness's view of the release."""

    namespace: str
    images: Mapping[str, str]
    kubectl: str
    node_ports: Mapping[str, Sequence[int]] = field(default_factory=dict)  # Service -> ports
    replicas: Mapping[str, int] = field(default_factory=dict)  # Deployment -> replicas
    namespace_uid: str = ""  # owns the release's ClusterRoles and their bindings

    def shape(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`objects` with the NodePorts and replica counts kept, and cluster-scoped RBAC owned
        by the namespace (namespace and images are set by rendering)."""
        from harness.render import own_by_namespace

        if self.namespace_uid:
            own_by_namespace(objects, self.namespace, self.namespace_uid)
        for obj in objects:
            name = obj["metadata"]["name"]
            ports = (obj.get("spec") or {}).get("ports") or []
            if obj["kind"] == "Service" and name in self.node_ports:
                for port, node_port in zip(ports, self.node_ports[name], strict=False):
                    port["nodePort"] = node_port
            if obj["kind"] == "Deployment" and name in self.replicas:
                obj["spec"]["replicas"] = self.replicas[name]
        return objects


def post_render(text: str, config: PostRender) -> list[dict[str, Any]]:
    """Helm's rendered manifests as the harness deploys them."""
    from harness.render import render_text

    return config.shape(
        render_text(
            text,
            source="the chart's rendered manifests",
            namespace=config.namespace,
            images=config.images,
            kubectl=config.kubectl,
        )
    )


class Helm:
    """Helm commands against one cluster, the release's objects shaped by `PostRender`."""

    def __init__(self, kubeconfig: Path, context: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context

    def _run(self, *args: str | Path) -> str:
        argv: list[str | Path] = [helm_path(), *args, "--kubeconfig", self.kubeconfig]
        if self.context:
            argv += ["--kube-context", self.context]
        return run(argv, timeout=HELM_TIMEOUT_S)

    @contextmanager
    def _post_renderer(self, config: PostRender) -> Iterator[list[str]]:
        with tempfile.NamedTemporaryFile("w", prefix="kh-post-render-", suffix=".json") as file:
            json.dump(config.__dict__, file, default=dict)
            file.flush()
            yield [
                "--post-renderer", sys.executable,
                "--post-renderer-args", "-m",
                "--post-renderer-args", "harness.helm",
                "--post-renderer-args", "post-render",
                "--post-renderer-args", file.name,
            ]  # fmt: skip

    def install(self, release: HelmRelease, config: PostRender) -> None:
        """`helm install`, not waiting: the harness's own wait judges the rollout."""
        with self._post_renderer(config) as post:
            self._run("install", release.name, *release.chart_args(), "--namespace",
                      config.namespace, *post)  # fmt: skip

    def upgrade(self, release: HelmRelease, config: PostRender) -> None:
        """`helm upgrade` to `release`'s chart and values, not waiting."""
        with self._post_renderer(config) as post:
            self._run("upgrade", release.name, *release.chart_args(), "--namespace",
                      config.namespace, *post)  # fmt: skip

    def rollback(self, release: HelmRelease, namespace: str) -> None:
        """`helm rollback` to the revision before the current one, not waiting."""
        self._run("rollback", release.name, "--namespace", namespace)

    def uninstall(self, release: HelmRelease, namespace: str) -> None:
        self._run("uninstall", release.name, "--namespace", namespace, "--ignore-not-found")

    def releases(self, namespace: str) -> list[str]:
        """Names of the releases in `namespace`, whatever their state."""
        listed = self._run("list", "--namespace", namespace, "--all", "--output", "json")
        return [release["name"] for release in json.loads(listed)]

    def history(self, release: HelmRelease, namespace: str) -> list[dict[str, Any]]:
        """The release's revisions (revision, status, description), oldest first."""
        return json.loads(
            self._run("history", release.name, "--namespace", namespace, "--output", "json")
        )


def _main(argv: Sequence[str]) -> int:
    """`python -m harness.helm post-render CONFIG`: Helm's post-renderer."""
    if len(argv) != 2 or argv[0] != "post-render":
        print("usage: python -m harness.helm post-render CONFIG.json", file=sys.stderr)
        return 2
    config = PostRender(**json.loads(Path(argv[1]).read_text()))
    try:
        objects = post_render(sys.stdin.read(), config)
    except InvalidConfiguration as exc:
        print(f"{exc.message}\nfix: {exc.fix}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
