"""The chaos ledger: what is written is read back, and concurrent writers lose nothing."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from harness.chaos.ledger import Injected, Ledger, ledger_path
from harness.paths import cache_dir


def entry(id: str, fault: str = "cpu_hog", namespace: str | None = "kh-a") -> Injected:
    return Injected(
        id=id,
        fault=fault,
        cluster="c1",
        namespace=namespace,
        node="node-1",
        target="demo-x/demo",
        undo={"pid": 42, "rules": ["INPUT ! -i lo"], "nested": {"ok": True}},
        started=1700000000.5,
    )


def test_each_cluster_has_its_own_ledger_file():
    assert ledger_path("kube-harness") == cache_dir() / "chaos" / "kube-harness.jsonl"
    assert Ledger("kube-harness").path == ledger_path("kube-harness")


def test_entries_round_trip_through_the_file(tmp_path: Path):
    path = tmp_path / "chaos" / "c1.jsonl"
    Ledger("c1", path).add(entry("a1"))
    Ledger("c1", path).add(entry("b2", fault="drain", namespace=None))
    assert Ledger("c1", path).pending() == [entry("a1"), entry("b2", "drain", None)]
    assert len(path.read_text().splitlines()) == 2


def test_pending_filters_by_namespace_and_fault(tmp_path: Path):
    ledger = Ledger("c1", tmp_path / "l.jsonl")
    for e in (entry("a1"), entry("b2", "drain"), entry("c3", "drain", "kh-b")):
        ledger.add(e)
    assert [e.id for e in ledger.pending(namespace="kh-a")] == ["a1", "b2"]
    assert [e.id for e in ledger.pending(fault="drain")] == ["b2", "c3"]
    assert [e.id for e in ledger.pending(namespace="kh-b", fault="drain")] == ["c3"]


def test_remove_is_idempotent_and_adding_an_id_again_replaces_it(tmp_path: Path):
    ledger = Ledger("c1", tmp_path / "l.jsonl")
    ledger.add(entry("a1"))
    ledger.add(entry("a1", fault="cordon"))
    assert [e.fault for e in ledger.pending()] == ["cordon"]
    ledger.remove("a1")
    ledger.remove("a1")
    ledger.remove("never-there")
    assert ledger.pending() == []


def test_a_missing_file_is_an_empty_ledger(tmp_path: Path):
    assert Ledger("c1", tmp_path / "nothing" / "here.jsonl").pending() == []


def test_a_damaged_line_is_named_and_kept_but_hides_no_other_fault(tmp_path: Path, capsys):
    """One corrupt line blocked every revert: now the others are pending as before, the
    line is named each time, and kept (it may describe a fault to undo by hand)."""
    path = tmp_path / "l.jsonl"
    ledger = Ledger("c1", path)
    ledger.add(entry("a1"))
    path.write_text(path.read_text() + '{"id": "half\n')
    assert [e.id for e in ledger.pending()] == ["a1"]
    warning = capsys.readouterr().err + capsys.readouterr().out
    assert f"{path}:2 is not a chaos ledger entry" in warning and "by hand" in warning
    ledger.remove("a1")
    ledger.add(entry("b2"))
    assert [e.id for e in ledger.pending()] == ["b2"]
    assert '{"id": "half' in path.read_text()


def test_clear_forgets_every_fault_and_damaged_line_and_returns_what_was_pending(tmp_path: Path):
    path = tmp_path / "l.jsonl"
    ledger = Ledger("c1", path)
    ledger.add(entry("a1"))
    path.write_text(path.read_text() + '{"id": "half\n')
    assert ledger.clear() == [entry("a1")]
    assert not path.exists() and ledger.pending() == []
    assert ledger.clear() == []


def test_describe_says_what_where_and_which():
    assert entry("a1").describe() == "cpu_hog a1 on demo-x/demo node node-1 in kh-a"


def _add_many(path: str, worker: int, count: int) -> None:
    ledger = Ledger("c1", Path(path))
    for i in range(count):
        ledger.add(entry(f"w{worker}-{i}"))
        if i % 3 == 0:
            ledger.remove(f"w{worker}-{i}")


@pytest.mark.slow
def test_concurrent_processes_lose_no_entry_and_readers_never_see_half_a_file(tmp_path: Path):
    path = tmp_path / "l.jsonl"
    workers, count = 6, 15
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_add_many, args=(str(path), w, count)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    reads = 0
    while any(p.is_alive() for p in processes):
        Ledger("c1", path).pending()  # raises on a torn file
        reads += 1
    for process in processes:
        process.join()
        assert process.exitcode == 0
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(count) if i % 3}
    assert {e.id for e in Ledger("c1", path).pending()} == expected
    assert reads > 0
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


def test_concurrent_threads_lose_no_entry(tmp_path: Path):
    path = tmp_path / "l.jsonl"
    threads = [threading.Thread(target=_add_many, args=(str(path), w, 10)) for w in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(Ledger("c1", path).pending()) == 5 * 6
