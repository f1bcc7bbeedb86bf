"""The offline kind node image: what it reads from kind's sources and how it lays out a node."""

import json
from pathlib import Path

import pytest
import yaml

from harness.images import kind_node
from harness.images.kind_node import containerd_config, go_string_consts

GO_SOURCE = """
package nodeimage

const kindnetdImage = "docker.io/kindest/kindnetd:v20250512-df8de77b"

var defaultCNIImages = []string{kindnetdImage}

const defaultCNIManifest = `
kind: DaemonSet
spec:
  containers:
  - image: ` + kindnetdImage + `
    env: {value: "{{ .PodSubnet }}"}
`

const escaped = "a\\tb" + "c"
"""


def test_string_constants_are_read_with_their_joins():
    consts = go_string_consts(GO_SOURCE)
    assert consts["kindnetdImage"] == "docker.io/kindest/kindnetd:v20250512-df8de77b"
    assert (
        "  - image: docker.io/kindest/kindnetd:v20250512-df8de77b\n" in consts["defaultCNIManifest"]
    )
    assert "{{ .PodSubnet }}" in consts["defaultCNIManifest"]
    assert consts["escaped"] == "a\tbc"
    assert "defaultCNIImages" not in consts


def test_containerd_config_gets_the_sandbox_image_kubeadm_expects():
    kind_config = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n'
        '  sandbox_image = "registry.k8s.io/pause:3.10"\n'
    )
    config = containerd_config(kind_config, "registry.k8s.io/pause:3.10.1")
    assert 'sandbox_image = "registry.k8s.io/pause:3.10.1"' in config
    assert config.count("sandbox_image") == 1


FLANNEL_YAML = """---
kind: ConfigMap
apiVersion: v1
metadata: {name: kube-flannel-cfg, namespace: kube-flannel}
data:
  cni-conf.json: |
    {"name": "cbr0"}
  net-conf.json: |
    {"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: kube-flannel-ds, namespace: kube-flannel}
spec:
  template:
    spec:
      initContainers:
      - {name: install-cni-plugin, image: ghcr.io/flannel-io/flannel-cni-plugin:v1}
      - {name: install-cni, image: ghcr.io/flannel-io/flannel:v0.26.7}
      containers:
      - {name: kube-flannel, image: ghcr.io/flannel-io/flannel:v0.26.7}
      volumes:
      - {name: run, hostPath: {path: /run/flannel}}
      - {name: cni-plugin, hostPath: {path: /opt/cni/bin}}
"""


def fake_flannel_module(tmp_path: Path) -> Path:
    module = tmp_path / "flannel@v0.26.7"
    (module / "Documentation").mkdir(parents=True)
    (module / "Documentation/kube-flannel.yml").write_text(FLANNEL_YAML)
    return module


def fake_kind_module(tmp_path: Path) -> Path:
    module = tmp_path / "kind@v0.30.0"
    files = module / "images/base/files"
    for path, text in {
        "usr/local/bin/entrypoint": "#!/bin/bash\n",
        "kind/bin/mount-product-files.sh": "#!/bin/bash\n",
        "etc/containerd/config.toml": 'sandbox_image = "registry.k8s.io/pause:3.10"\n',
        "etc/systemd/system/kubelet.service": "[Service]\n",
        "etc/systemd/system/containerd.service": "[Service]\n",
        "etc/systemd/system/undo-mount-hacks.service": "[Service]\n",
        "LICENSES/README.txt": "licenses\n",
    }.items():
        (files / path).parent.mkdir(parents=True, exist_ok=True)
        (files / path).write_text(text)
    build = module / "pkg/build/nodeimage"
    build.mkdir(parents=True)
    (build / "const_cni.go").write_text(GO_SOURCE)
    (build / "const_storage.go").write_text(
        'const storageProvisionerImage = "docker.io/kindest/local-path-provisioner:v1"\n'
        'const storageHelperImage = "docker.io/kindest/local-path-helper:v2"\n'
        "const defaultStorageManifest = `image: ` + storageProvisionerImage + `\n`\n"
    )
    return module


def fake_debian_root(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    lib = root / "lib/systemd/system"
    for wants, unit in [
        ("multi-user.target.wants", "getty.target"),
        ("sysinit.target.wants", "systemd-tmpfiles-setup.service"),
        ("sysinit.target.wants", "systemd-journald.service"),
        ("sockets.target.wants", "systemd-udevd-control.socket"),
    ]:
        (lib / wants).mkdir(parents=True, exist_ok=True)
        (lib / wants / unit).symlink_to(f"../{unit}")
    for folder in ("etc/systemd", "usr/bin", "sbin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etc/systemd/journald.conf").write_text("[Journal]\n")
    return root


def test_a_debian_root_becomes_a_kind_node(tmp_path, monkeypatch):
    monkeypatch.setattr(kind_node, "base_runtime_spec", lambda: {"process": {}, "hooks": {}})
    binaries = {}
    for name in ("kubeadm", "kubelet", "kubectl", "crictl", "flannel"):
        binaries[name] = tmp_path / name
        binaries[name].write_text(name)
    root = fake_debian_root(tmp_path)
    sources = kind_node.KindSources(fake_kind_module(tmp_path), fake_flannel_module(tmp_path))
    kind_node.assemble_rootfs(
        root,
        sources=sources,
        version="v1.34.4",
        binaries=binaries,
        sandbox_image="registry.k8s.io/pause:3.10.1",
        flannel_image="localhost/kube-harness/flannel:v0.26.7",
    )
    assert (root / "kind/version").read_text() == "v1.34.4"
    assert (root / "usr/bin/kubelet").read_text() == "kubelet"
    assert (root / "usr/local/bin/entrypoint").stat().st_mode & 0o111
    assert "pause:3.10.1" in (root / "etc/containerd/config.toml").read_text()
    assert json.loads((root / "etc/containerd/cri-base.json").read_text()) == {
        "process": {},
        "hooks": {},
    }
    assert "kube-harness/flannel:v0.26.7" in (root / "kind/manifests/default-cni.yaml").read_text()
    assert (root / "opt/cni/bin/flannel").read_text() == "flannel"
    assert "local-path-provisioner:v1" in (root / "kind/manifests/default-storage.yaml").read_text()
    assert not (root / "LICENSES").exists()
    # Debian's paths behind kind's.
    assert str((root / "usr/local/bin/containerd").readlink()) == "/usr/bin/containerd"
    assert str((root / "opt/cni/bin/portmap").readlink()) == "/usr/lib/cni/portmap"
    # systemd as kind's Dockerfile leaves it.
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert sorted(p.name for p in wants.iterdir()) == [
        "containerd.service",
        "kubelet.service",
        "undo-mount-hacks.service",
    ]
    lib = root / "lib/systemd/system"
    assert not list((lib / "multi-user.target.wants").iterdir())
    assert [p.name for p in (lib / "sysinit.target.wants").iterdir()] == [
        "systemd-journald.service"
    ]
    assert not list((lib / "sockets.target.wants").iterdir())
    assert str((root / "etc/systemd/system/systemd-binfmt.service").readlink()) == "/dev/null"
    assert str((root / "sbin/init").readlink()) == "/lib/systemd/systemd"
    assert (root / "etc/systemd/journald.conf").read_text().endswith("ReadKMsg=no\n")


def test_storage_images_are_named_as_kind_pins_them(tmp_path):
    sources = kind_node.KindSources(fake_kind_module(tmp_path), fake_flannel_module(tmp_path))
    assert sources.storage_images() == {
        "local-path-provisioner": "docker.io/kindest/local-path-provisioner:v1",
        "local-path-helper": "docker.io/kindest/local-path-helper:v2",
    }


def test_flannel_becomes_kinds_templated_host_gw_cni(tmp_path):
    text = kind_node.flannel_manifest(FLANNEL_YAML, "localhost/kube-harness/flannel:v0.26.7")
    assert text.startswith("# would you kindly template this file\n")
    config_map, daemon_set = yaml.safe_load_all(text.split("\n", 1)[1])
    net = json.loads(config_map["data"]["net-conf.json"])
    assert net == {
        "Network": "{{ .PodSubnet }}",
        "EnableNFTables": False,
        "Backend": {"Type": "host-gw"},
    }
    pod = daemon_set["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["install-cni"]
    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {
        "localhost/kube-harness/flannel:v0.26.7"
    }
    assert [v["name"] for v in pod["volumes"]] == ["run"]


@pytest.mark.parametrize("name", ["kube-apiserver", "etcd"])
def test_control_plane_binaries_sit_on_path(tmp_path, monkeypatch, name):
    binary = tmp_path / name
    binary.write_text("#!")
    recorded = {}

    def fake_layered_image(ref, *, files, entrypoint, base=None, name):
        recorded.update(ref=ref, files=files, entrypoint=entrypoint)
        return tmp_path / "image.tar"

    monkeypatch.setattr(kind_node, "layered_image", fake_layered_image)
    _, ref = kind_node._in_path(f"registry.k8s.io/{name}:v1", name, binary)
    assert ref == f"registry.k8s.io/{name}:v1"
    assert recorded["files"] == {f"usr/local/bin/{name}": binary}
    assert recorded["entrypoint"] == [f"/usr/local/bin/{name}"]
