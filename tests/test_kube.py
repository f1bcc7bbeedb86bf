"""The API client: every call that gives no timeout of its own gets one."""

import base64
import os
import secrets
import socket
import threading
from pathlib import Path

import pytest
import urllib3
from kubeconfigs import write_kubeconfig

from harness import kube as kube_module
from harness.errors import InvalidConfiguration
from harness.kube import Kube
from harness.processes import process_named, this_process


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


def test_the_keys_a_kubeconfig_embeds_stay_in_the_cache_and_a_killed_runs_are_removed(
    tmp_path, monkeypatch
):
    """The kubernetes library writes embedded certificates and keys to files it removes only
    at a clean exit: they go to a 0700 folder of this process in the harness's cache, and the
    folders of processes that are gone are removed, so keys do not pile up in /tmp."""
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    left_by_a_killed_run = tmp_path / "cache" / "client-files" / "999999999@1"
    left_by_a_killed_run.mkdir(parents=True)
    (left_by_a_killed_run / "tmpkey").write_text("a key")
    of_a_running_one = tmp_path / "cache" / "client-files" / process_named(os.getppid())
    of_a_running_one.mkdir()
    key = f"-----BEGIN PRIVATE KEY-----\n{secrets.token_hex(16)}\n-----END PRIVATE KEY-----\n"
    user = {
        "client-certificate-data": base64.b64encode(b"a certificate").decode(),
        "client-key-data": base64.b64encode(key.encode()).decode(),
    }
    config = write_kubeconfig(tmp_path / "kubeconfig", users=[{"name": "u", "user": user}])
    kube = Kube(config)
    mine = tmp_path / "cache" / "client-files" / this_process()
    assert kube.api_client.configuration.key_file.startswith(f"{mine}/")
    assert Path(kube.api_client.configuration.key_file).read_text() == key
    assert mine.stat().st_mode & 0o777 == 0o700
    assert not left_by_a_killed_run.exists()
    assert of_a_running_one.is_dir()
    kube.close()
