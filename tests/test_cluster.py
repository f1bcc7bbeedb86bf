import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.chaos.ledger import Injected, Ledger
from harness.cluster import (
    Probe,
    Selection,
    active,
    bring_up,
    delete_cluster,
    existing,
    select_provider,
)
from harness.cluster.provider import ClusterOptions
from harness.errors import InvalidConfiguration, NoProviderFits, ProviderUnavailable


def probes(**ok: bool):
    def probe(name: str, kubeconfig: Path | None) -> Probe:
        good = ok.get(name, False)
        return Probe(name, good, f"{name} {'works' if good else 'absent'}", fix=f"install {name}")

    return probe


def test_option_wins_over_environment():
    got = select_provider(
        "kind", environ={"HARNESS_PROVIDER": "local"}, probe=probes(kind=True, local=True)
    )
    assert got == Selection("kind", "from --cluster-provider")


def test_environment_used_when_option_is_auto():
    got = select_provider("auto", environ={"HARNESS_PROVIDER": "local"}, probe=probes(local=True))
    assert got == Selection("local", "from HARNESS_PROVIDER")


@pytest.mark.parametrize(
    ("available", "kubeconfig", "expected"),
    [
        ({"existing": True, "kind": True, "local": True}, Path("kc"), "existing"),
        ({"kind": True, "local": True}, None, "kind"),
        ({"local": True}, None, "local"),
    ],
)
def test_detection_order(available, kubeconfig, expected):
    got = select_provider(None, kubeconfig=kubeconfig, environ={}, probe=probes(**available))
    assert got.name == expected
    assert got.reason.startswith("detected: ")


def test_nothing_fits_lists_every_attempt_and_its_fix():
    with pytest.raises(NoProviderFits) as caught:
        select_provider(None, environ={}, probe=probes())
    text = str(caught.value)
    for name in ("existing", "kind", "local"):
        assert f"- {name}: {name} absent" in text
        assert f"fix: install {name}" in text


def test_explicit_provider_that_cannot_run_says_why():
    with pytest.raises(
        ProviderUnavailable, match="kind \\(from --cluster-provider\\): kind absent"
    ):
        select_provider("kind", environ={}, probe=probes())


def test_unknown_provider_names_the_choices():
    with pytest.raises(InvalidConfiguration, match="'minikube' is not a cluster provider"):
        select_provider(None, environ={"HARNESS_PROVIDER": "minikube"}, probe=probes())


@pytest.mark.parametrize(
    "name", ["", "Upper", "with space", "under_score", "-x", "x-", "..", "a/b", "x" * 41]
)
def test_invalid_cluster_names_are_refused(name):
    with pytest.raises(InvalidConfiguration, match="cluster name"):
        ClusterOptions(name=name)


def nodes_holding(*held: list[str]) -> SimpleNamespace:
    """A Kube whose nodes node-1, node-2, ... list the `held` images in their status."""
    nodes = [
        SimpleNamespace(
            metadata=SimpleNamespace(name=f"node-{index}"),
            spec=SimpleNamespace(taints=None),
            status=SimpleNamespace(images=[SimpleNamespace(names=[n]) for n in names]),
        )
        for index, names in enumerate(held, start=1)
    ]
    return SimpleNamespace(
        core=SimpleNamespace(list_node=lambda **_: SimpleNamespace(items=nodes)),
        close=lambda: None,
    )


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: secret-token-value}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}, {name: other, context: {cluster: c}}]
current-context: ctx
"""


@pytest.mark.parametrize(
    ("text", "context", "complaint"),
    [
        (None, None, "does not exist"),
        ("", None, "has no context"),
        ("\x00\xff", None, "not UTF-8 text"),
        ("users: [{name: u, user: {token: secret-token-value}\n", None, "not valid YAML"),
        (KUBECONFIG, "prod", "has no context 'prod' (it has: ctx, other)"),
    ],
)
def test_a_kubeconfig_the_client_cannot_use_is_named_without_its_contents(
    tmp_path, text, context, complaint
):
    kubeconfig = tmp_path / "kubeconfig"
    if text is not None:
        kubeconfig.write_bytes(text.encode("latin-1"))
    with pytest.raises(ProviderUnavailable, match=re.escape(complaint)) as info:
        existing.ExistingProvider(ClusterOptions(kubeconfig=kubeconfig, context=context))
    assert str(kubeconfig) in info.value.message and info.value.fix
    assert "secret-token-value" not in str(info.value)


def test_an_existing_cluster_takes_an_image_its_nodes_already_hold(tmp_path, monkeypatch):
    """Nothing is loaded into a cluster the harness does not run: an image every node holds
    is used as it is; one that some node lacks is refused, naming the node and the fix."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    archive = tmp_path / "app.tar"
    provider = existing.ExistingProvider(ClusterOptions(kubeconfig=kubeconfig))
    monkeypatch.setattr(existing, "NODE_STATUS_LAG_S", 0)  # no wait for a recent load
    monkeypatch.setattr(existing, "archive_ref", lambda _: "localhost/app:v1")
    monkeypatch.setattr(existing, "Kube", lambda *_: nodes_holding(*[["localhost/app:v1"]] * 2))
    provider.load_image(archive)  # on every node: nothing to do

    lacking = nodes_holding(["localhost/app:v1"], [])
    monkeypatch.setattr(existing, "Kube", lambda *_: lacking)
    with pytest.raises(
        InvalidConfiguration, match=r"localhost/app:v1 is not on node\(s\) node-2"
    ) as info:
        provider.load_image(archive)
    assert f"kind load image-archive {archive}" in info.value.fix


@pytest.mark.parametrize("creates", [True, False], ids=["made-by-the-harness", "existing"])
def test_cluster_down_forgets_the_faults_only_of_a_cluster_it_deleted(
    tmp_path, monkeypatch, creates
):
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    active.record(active.ActiveCluster("kind", "c1", str(tmp_path / "kubeconfig")))
    pending = Injected("a1", "cordon", "c1", "kh-1", "n1", "n1")
    Ledger("c1").add(pending)
    deleted = []
    provider = SimpleNamespace(
        options=ClusterOptions(name="c1"),
        capabilities=SimpleNamespace(creates_clusters=creates),
        delete=lambda: deleted.append(True),
    )
    delete_cluster(provider)
    assert deleted == [True] and active.read() is None
    # An existing cluster lives on, and so do the faults in it.
    assert Ledger("c1").pending() == ([] if creates else [pending])


def test_bring_up_creates_waits_and_makes_the_cluster_active(tmp_path, monkeypatch):
    """The one way the CLI's `cluster up` and the pytest fixture bring a cluster up; the
    record keeps the kubeconfig's context, for later commands on it."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path))
    calls = []
    provider = SimpleNamespace(
        name="kind",
        options=ClusterOptions(name="c1", context="ctx"),
        capabilities=SimpleNamespace(creates_clusters=True),
        create=lambda: calls.append("create"),
        wait_ready=lambda: calls.append("wait_ready"),
        kubeconfig=lambda: tmp_path / "kubeconfig",
    )
    bring_up(provider)
    assert calls == ["create", "wait_ready"]
    recorded = active.read()
    assert recorded == active.ActiveCluster("kind", "c1", str(tmp_path / "kubeconfig"), "ctx")
