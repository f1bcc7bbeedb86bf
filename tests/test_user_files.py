"""Files a user hands the harness, careless or hostile: each refused with a clear error,
never a traceback, a hang or a silent pick."""

import os
import sys
import threading

import pytest

from harness.errors import InvalidConfiguration
from harness.user_files import MAX_BYTES, read_json, read_text, read_yaml

LAUGHS = """
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def refused(path, match, reader=read_yaml):
    with pytest.raises(InvalidConfiguration, match=match) as info:
        reader(path, "spec")
    assert str(path) in info.value.message and info.value.fix
    return info.value


def test_a_plain_file_reads(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("services:\n  - name: demo\nshared: &x {a: 1}\nagain: *x\n")
    assert read_yaml(path, "spec") == {
        "services": [{"name": "demo"}],
        "shared": {"a": 1},
        "again": {"a": 1},
    }


def test_a_missing_file_or_a_directory_is_named(tmp_path):
    refused(tmp_path / "nope.yaml", "does not exist")
    refused(tmp_path, "is a directory")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    done = threading.Event()

    def read():
        with pytest.raises(InvalidConfiguration, match="not a regular file"):
            read_yaml(fifo, "spec")
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO hung"


def test_binary_utf16_and_huge_files_are_refused(tmp_path):
    binary = tmp_path / "spec.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    refused(binary, "not UTF-8 text")
    utf16 = tmp_path / "spec16.yaml"
    utf16.write_text("services: []\n", encoding="utf-16")
    refused(utf16, "not UTF-8 text")
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(MAX_BYTES + 1)
    refused(huge, "more than")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("a: 1\n")
    path.chmod(0)
    refused(path, "cannot be read")


def test_a_key_given_twice_is_refused_not_silently_overwritten(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("services:\n  - name: demo\n    users: 5\n    users: 50\n")
    assert "the key 'users' appears twice" in refused(path, "not valid YAML").message
    as_json = tmp_path / "experiment.json"
    as_json.write_text('{"title": "a", "title": "b"}')
    refused(as_json, "the key 'title' appears twice", reader=read_json)


def test_a_yaml_merge_key_may_still_be_overridden(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("base: &b {users: 5, rps: 1}\nload:\n  <<: *b\n  users: 10\n")
    assert read_yaml(path, "spec")["load"] == {"users": 10, "rps": 1}


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(LAUGHS)
    refused(path, "expand to more than")


def test_nesting_too_deep_to_read_is_refused(tmp_path):
    # Five times Python's recursion limit: deep enough for any parser to run out of stack.
    depth = 5 * sys.getrecursionlimit()
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * depth + "]" * depth)
    refused(deep, "nested too deeply|not valid YAML")
    deep_json = tmp_path / "deep.json"
    deep_json.write_text("[" * depth + "]" * depth)
    refused(deep_json, "nested too deeply", reader=read_json)


def test_text_is_read_whole(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("é\n")
    assert read_text(path, "file") == "é\n"
