"""The `existing` provider: any cluster a kubeconfig reaches. Never created or deleted here."""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.cluster.provider import Capabilities, ClusterOptions, Probe
from harness.errors import InvalidConfiguration, ProviderUnavailable, WaitTimeout
from harness.image_availability import NODE_STATUS_LAG_S, nodes_without
from harness.images.oci import archive_ref
from harness.kube import Kube, wait_nodes_ready
from harness.progress import say
from harness.user_files import read_text, read_yaml
from harness.wait import Pending, wait_for


def default_kubeconfig() -> Path:
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    return Path(first) if first else Path.home() / ".kube" / "config"


def probe(kubeconfig: Path | None) -> Probe:
    """`existing` is chosen automatically only when a kubeconfig was given explicitly."""
    if kubeconfig is None:
        return Probe(
            "existing",
            False,
            "no kubeconfig given",
            fix="pass --kubeconfig=PATH (pytest) or --kubeconfig PATH (harness)",
        )
    try:  # missing, a folder, a FIFO, unreadable: said as such
        read_text(kubeconfig, "kubeconfig")
    except InvalidConfiguration as exc:
        return Probe(
            "existing", False, exc.message, fix="give the path of a readable kubeconfig file"
        )
    return Probe("existing", True, f"kubeconfig {kubeconfig} given")


def check_kubeconfig(path: Path, context: str | None) -> None:
    """A kubeconfig the client can use: a readable YAML mapping with the context asked for
    (or its current one). Errors name the file and the contexts, never its contents.

    Raises:
        ProviderUnavailable: missing, unreadable or broken, or without that context.
    """
    fix = "pass --kubeconfig=PATH (or set KUBECONFIG) to a working kubeconfig"
    try:
        data = read_yaml(path, "kubeconfig", fix=fix)
    except InvalidConfiguration as exc:
        raise ProviderUnavailable(f"existing: {exc.message}", fix=exc.fix) from None
    data = data if isinstance(data, dict) else {}
    entries = data.get("contexts") or []
    entries = entries if isinstance(entries, list) else []
    contexts = [c["name"] for c in entries if isinstance(c, dict) and "name" in c]
    if not contexts:
        raise ProviderUnavailable(f"existing: kubeconfig {path} has no context", fix=fix)
    choose = "pass --cluster-context=NAME (pytest) or --context NAME (harness) with one of those"
    wanted = context or data.get("current-context")
    if wanted is None:
        raise ProviderUnavailable(
            f"existing: kubeconfig {path} names no current-context "
            f"(it has: {', '.join(map(str, contexts))})",
            fix=choose,
        )
    if wanted not in contexts:
        raise ProviderUnavailable(
            f"existing: kubeconfig {path} has no context {wanted!r} "
            f"(it has: {', '.join(map(str, contexts))})",
            fix=choose,
        )


class ExistingProvider:
    """A cluster someone else runs. Chaos is refused unless `options.allow_chaos`."""

    name = "existing"

    def __init__(self, options: ClusterOptions) -> None:
        self.options = options
        self._kubeconfig = options.kubeconfig or default_kubeconfig()
        check_kubeconfig(self._kubeconfig, options.context)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            creates_clusters=False,
            chaos_allowed=self.options.allow_chaos,
            nodeports_on_localhost=False,
        )

    def create(self) -> None:
        """Nothing is created: the cluster must already answer."""
        self.wait_ready(timeout=30)

    def delete(self) -> None:
        """Never deletes a cluster it did not create."""

    def kubeconfig(self) -> Path:
        return self._kubeconfig

    def wait_ready(self, timeout: float = 300) -> None:
        kube = Kube(self._kubeconfig, self.options.context)
        try:
            wait_nodes_ready(kube, timeout=timeout)
        finally:
            kube.close()

    def collect_logs(self, dest: Path) -> list[Path]:
        """Only what the API shows: node conditions (component logs are not ours to read)."""
        dest.mkdir(parents=True, exist_ok=True)
        kube = Kube(self._kubeconfig, self.options.context)
        try:
            nodes = kube.core.list_node().items
            path = dest / "nodes.json"
            path.write_text(
                json.dumps(
                    [kube.api_client.sanitize_for_serialization(n.status) for n in nodes],
                    indent=2,
                )
            )
            return [path]
        finally:
            kube.close()

    def load_image(self, archive: Path) -> None:
        """Nothing is loaded into a cluster the harness does not run: the archive's image must
        already be on every node that takes pods, as the nodes' status lists it (an image
        loaded a moment ago is waited for: the kubelet lists it within a minute).

        Raises:
            InvalidConfiguration: a node does not hold it; the message names the nodes.
        """
        ref = archive_ref(archive)
        kube = Kube(self._kubeconfig, self.options.context)

        missing: list[str] = []

        def listed() -> bool | Pending:
            missing[:] = nodes_without(kube, ref)
            return Pending(f"not listed by {', '.join(missing)}") if missing else True

        try:
            wait_for(listed, what=f"the nodes to list {ref}", timeout=NODE_STATUS_LAG_S, interval=2)
        except WaitTimeout:
            pass  # `missing` names the nodes, as last listed
        finally:
            kube.close()
        if missing:
            raise InvalidConfiguration(
                f"existing: image {ref} is not on node(s) {', '.join(missing)}, and the harness "
                "loads no image into a cluster it does not run",
                fix=f"load {archive} onto every node (kind: `kind load image-archive {archive}`; "
                "containerd: `ctr -n k8s.io images import` on each node), or push the image to "
                "a registry the cluster pulls from and set it in the manifests",
            )
        say(f"existing: {ref} is on every node already")
