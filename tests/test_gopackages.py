import pytest

from harness.gopackages import program_name


@pytest.mark.parametrize(
    ("package", "name"),
    [
        ("github.com/mccutchen/go-httpbin/v2/cmd/go-httpbin", "go-httpbin"),
        ("k8s.io/kube-state-metrics/v2", "kube-state-metrics"),
        ("example.com/tool/v12", "tool"),
        ("example.com/v1", "v1"),
        ("helm.sh/helm/v3/cmd/helm", "helm"),
    ],
)
def test_program_name_is_the_one_go_install_gives(package: str, name: str) -> None:
    assert program_name(package) == name
