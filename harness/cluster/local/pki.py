"""A fresh certificate authority per cluster and every certificate its components need.

Keys are ECDSA P-256 (fast to make on a small machine); certificates come from the openssl CLI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cluster.local.layout import (
    CLUSTER_DOMAIN,
    KUBERNETES_SERVICE_IP,
    NODE_IP,
    Layout,
)
from harness.commands import run

DAYS = 365
FIX = "apt-get install openssl"


@dataclass(frozen=True)
class Cert:
    """One certificate to issue: its subject, its signer and what it may be used for."""

    name: str
    ca: str
    common_name: str
    organization: str | None = None
    server: bool = False
    client: bool = False
    hosts: tuple[str, ...] = ()


def _ec_key_args() -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _subject(cert: Cert) -> str:
    org = f"/O={cert.organization}" if cert.organization else ""
    return f"{org}/CN={cert.common_name}"


def make_ca(pki: Path, name: str, common_name: str) -> None:
    run(
        ["openssl", "req", "-x509", *_ec_key_args(), "-keyout", pki / f"{name}.key",
         "-out", pki / f"{name}.crt", "-days", str(DAYS), "-subj", f"/CN={common_name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"],
        fix=FIX,
    )  # fmt: skip


def issue(pki: Path, cert: Cert) -> None:
    """Write `<name>.crt` and `<name>.key` signed by the CA `cert.ca` in `pki`."""
    usages = [u for u, on in (("serverAuth", cert.server), ("clientAuth", cert.client)) if on]
    extensions = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={','.join(usages)}",
    ]
    if cert.hosts:
        names = [f"IP:{h}" if h[0].isdigit() else f"DNS:{h}" for h in cert.hosts]
        extensions.append("subjectAltName=" + ",".join(names))
    with tempfile.TemporaryDirectory(prefix="kh-pki-") as tmp:
        ext_file = Path(tmp) / "ext.cnf"
        ext_file.write_text("\n".join(extensions) + "\n")
        csr = Path(tmp) / "req.csr"
        run(
            ["openssl", "req", "-new", *_ec_key_args(), "-keyout", pki / f"{cert.name}.key",
             "-out", csr, "-subj", _subject(cert)],
            fix=FIX,
        )  # fmt: skip
        run(
            ["openssl", "x509", "-req", "-in", csr, "-CA", pki / f"{cert.ca}.crt",
             "-CAkey", pki / f"{cert.ca}.key", "-CAcreateserial", "-days", str(DAYS),
             "-extfile", ext_file, "-out", pki / f"{cert.name}.crt"],
            fix=FIX,
        )  # fmt: skip


def certificates(layout: Layout) -> list[Cert]:
    """Every leaf certificate of a cluster."""
    apiserver_names = (
        NODE_IP,
        KUBERNETES_SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{CLUSTER_DOMAIN}",
    )
    return [
        Cert("apiserver", "ca", "kube-apiserver", server=True, hosts=apiserver_names),
        Cert("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
             "system:masters", client=True),
        Cert("apiserver-etcd-client", "etcd-ca", "kube-apiserver-etcd-client", client=True),
        Cert("etcd-server", "etcd-ca", "etcd", server=True, client=True,
             hosts=("127.0.0.1", "localhost")),
        Cert("front-proxy-client", "front-proxy-ca", "front-proxy-client", client=True),
        Cert("admin", "ca", "kube-harness-admin", "system:masters", client=True),
        Cert("kube-controller-manager", "ca", "system:kube-controller-manager", client=True),
        Cert("kube-scheduler", "ca", "system:kube-scheduler", client=True),
        Cert("kube-proxy", "ca", "system:kube-proxy", client=True),
        Cert("kubelet-client", "ca", f"system:node:{layout.node_name}", "system:nodes",
             client=True),
        Cert("kubelet-server", "ca", layout.node_name, server=True,
             hosts=(NODE_IP, layout.node_name)),
    ]  # fmt: skip


def make_pki(layout: Layout) -> None:
    """Create the cluster's CAs, service-account key pair and leaf certificates."""
    pki = layout.pki_dir
    pki.mkdir(parents=True, exist_ok=True)
    pki.chmod(0o700)
    make_ca(pki, "ca", f"kube-harness {layout.name} CA")
    make_ca(pki, "etcd-ca", f"kube-harness {layout.name} etcd CA")
    make_ca(pki, "front-proxy-ca", f"kube-harness {layout.name} front-proxy CA")
    for cert in certificates(layout):
        issue(pki, cert)
    run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout",
         "-out", pki / "sa.key"],
        fix=FIX,
    )  # fmt: skip
    run(["openssl", "ec", "-in", pki / "sa.key", "-pubout", "-out", pki / "sa.pub"], fix=FIX)
    for key in pki.glob("*.key"):
        key.chmod(0o600)
