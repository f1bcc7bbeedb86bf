"""The API client: every call that gives no timeout of its own gets one."""

import socket
import threading

import pytest
import urllib3
from kubeconfigs import write_kubeconfig

from harness import kube as kube_module
from harness.errors import InvalidConfiguration
from harness.kube import Kube


@pytest.fixture
def silent_server():
    """An "API server" on 127.0.0.1 that accepts connections and never answers: its port and
    the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda kube: kube.core.list_namespace(),
        lambda kube: kube.dynamic.resources.get(api_version="v1", kind="ConfigMap"),
    ],
    ids=["typed", "dynamic-and-its-discovery"],
)
def test_a_server_that_never_answers_times_a_call_out_once(
    tmp_path, silent_server, monkeypatch, call
):
    port, accepted = silent_server
    monkeypatch.setattr(kube_module, "REQUEST_TIMEOUT_S", (1.0, 1.0))
    kube = Kube(write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}"))
    with pytest.raises(urllib3.exceptions.HTTPError, match="Read timed out"):
        call(kube)
    # Not sent again: the server took it, and each retry would wait as long once more.
    assert len(accepted) == 1
    kube.close()


def test_a_call_that_names_its_timeout_or_streams_keeps_it(tmp_path, monkeypatch):
    kube = Kube(write_kubeconfig(tmp_path / "kubeconfig"))
    seen = []

    def answer(*args, _request_timeout=None, **kwargs):
        seen.append(_request_timeout)
        raise ConnectionError("not asked")

    monkeypatch.setattr(kube.api_client, "call_api", answer)
    for kwargs in ({"_request_timeout": 5}, {"_preload_content": False}, {}):
        with pytest.raises(ConnectionError):
            kube.core.list_namespace(**kwargs)
    assert seen == [5, None, kube_module.REQUEST_TIMEOUT_S]
    kube.close()


def test_a_kubeconfig_that_is_gone_or_empty_is_named_with_the_fix(tmp_path):
    (tmp_path / "empty").write_text("")
    for path in (tmp_path / "gone", tmp_path / "empty"):
        with pytest.raises(InvalidConfiguration, match=f"kubeconfig {path} cannot be used") as e:
            Kube(path)
        assert "harness cluster up" in e.value.fix
