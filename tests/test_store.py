"""The results store: atomic records, readers that ignore temporary files, clear errors for
unreadable or foreign records, concurrent writers, and checkpoint round trips."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import sys
from pathlib import Path

import pytest
import torch

from harness import store as store_module
from harness.store import PUBLISHED_DIGITS, SCHEMA_VERSION, RunRecord, Store, StoreError, round_floats


def make_record(task: str = "sentiment", reward: str = "ce", run_hash: str = "abc123", status: str = "completed",
                **extra) -> RunRecord:
    return RunRecord(hash=run_hash, status=status, config={"task": task, "reward": reward, "seed": 1},
                     main_metric="accuracy", test={"accuracy": 91.5}, extra=extra)


def refuse_rename(src, dst):
    raise OSError("killed before rename")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- records -----------------------------------------------------------------------------------

def test_save_then_read_back(tmp_path):
    store = Store(tmp_path)
    path = store.save(make_record())
    assert path == tmp_path / "records" / "sentiment" / "ce" / "abc123.json"
    assert files_under(tmp_path) == [path]
    (record,) = list(store.records())
    assert record == make_record() and record.schema_version == SCHEMA_VERSION
    assert store.record("sentiment", "ce", "abc123") == record and store.record("sentiment", "ce", "other") is None
    assert store.status("sentiment", "ce", "abc123") == "completed"
    assert store.status("sentiment", "ce", "other") is None


def test_resave_overwrites(tmp_path):
    """Saving the same run again (e.g. --force) replaces the record rather than adding one."""
    store = Store(tmp_path)
    store.save(make_record(status="failed"))
    store.save(make_record(status="completed"))
    assert [r.status for r in store.records()] == ["completed"]


def test_records_of_several_cells(tmp_path):
    store = Store(tmp_path)
    cells = [("ner", "ce", "h1"), ("ner", "focal", "h2"), ("translation", "ce", "h3")]
    for task, reward, run_hash in cells:
        store.save(make_record(task, reward, run_hash))
    assert sorted((r.task, r.reward, r.hash) for r in store.records()) == cells


def test_empty_store_has_no_records(tmp_path):
    assert list(Store(tmp_path / "missing").records()) == []


def test_crash_before_rename_leaves_nothing(tmp_path, monkeypatch):
    """A writer killed between the temporary file and the rename leaves no record and no temp file."""
    store = Store(tmp_path)

    def crash(src, dst):
        assert Path(src).exists() and Path(src).name.endswith(".tmp")  # the data was written first
        refuse_rename(src, dst)

    monkeypatch.setattr(store_module.os, "replace", crash)
    with pytest.raises(OSError, match="killed before rename"):
        store.save(make_record())
    assert files_under(tmp_path) == []
    assert list(store.records()) == []
    assert store.status("sentiment", "ce", "abc123") is None


def test_crash_keeps_previous_record(tmp_path, monkeypatch):
    """A failed rewrite leaves the earlier record intact."""
    store = Store(tmp_path)
    store.save(make_record(status="failed"))
    monkeypatch.setattr(store_module.os, "replace", refuse_rename)
    with pytest.raises(OSError):
        store.save(make_record(status="completed"))
    assert store.status("sentiment", "ce", "abc123") == "failed"
    assert [p.name for p in files_under(tmp_path)] == ["abc123.json"]


def test_leftover_tmp_files_are_ignored(tmp_path):
    """Temporary files of a killed writer (any content, even truncated JSON) are not records."""
    store = Store(tmp_path)
    store.save(make_record())
    folder = tmp_path / "records" / "sentiment" / "ce"
    (folder / ".abc123.json.k1ll3d.tmp").write_text('{"schema_version": 1, "hash": "abc1')
    (folder / ".def456.json.x.tmp").write_text("")
    assert [r.hash for r in store.records()] == ["abc123"]
    assert store.status("sentiment", "ce", "abc123") == "completed"
    assert store.status("sentiment", "ce", "def456") is None


def test_other_schema_version_is_refused(tmp_path):
    store = Store(tmp_path)
    path = store.record_path("ner", "ce", "old")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({**make_record("ner", "ce", "old").to_json(), "schema_version": SCHEMA_VERSION + 1}))
    for read in (lambda: list(store.records()), lambda: store.status("ner", "ce", "old")):
        with pytest.raises(StoreError) as err:
            read()
        message = str(err.value)
        assert str(path) in message and f"version {SCHEMA_VERSION + 1}" in message


@pytest.mark.parametrize("content", ['{"schema_version": 1, "hash": "ab', "", "[1, 2", b"\xff\xfe\x00", "[1, 2]",
                                     '{"schema_version": 1, "hash": "abc123", "status": "completed"}'])
def test_corrupt_record_names_file_and_fix(tmp_path, content):
    store = Store(tmp_path)
    store.save(make_record())
    path = store.record_path("sentiment", "ce", "abc123")
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for read in (lambda: list(store.records()), lambda: store.status("sentiment", "ce", "abc123")):
        with pytest.raises(StoreError) as err:
            read()
        message = str(err.value)
        assert str(path) in message
        assert "delete it and rerun" in message


# --- concurrent writers ------------------------------------------------------------------------

WORKERS, PER_WORKER, SHARED = 4, 20, 8


def _writer(root: str, worker: int, start) -> None:
    """Writes PER_WORKER records: the first SHARED go to paths every worker writes, the rest are its own."""
    store = Store(root)
    start.wait()
    for i in range(PER_WORKER):
        run_hash = f"shared{i}" if i < SHARED else f"w{worker}-{i}"
        task = ("ner", "sentiment")[i % 2]
        # Large enough that a non-atomic write would be caught half-way.
        store.save(make_record(task, "ce", run_hash, writer=worker, payload=[worker] * 20000))


def test_concurrent_writers(tmp_path):
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    start = ctx.Barrier(WORKERS + 1)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, start)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    start.wait()
    store, reads = Store(tmp_path), 0
    while any(p.is_alive() for p in procs):  # read while they write: never a half-written record
        for record in store.records():
            assert record.extra["payload"] == [record.extra["writer"]] * 20000
            reads += 1
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    records = list(store.records())
    expected = {f"shared{i}" for i in range(SHARED)} | {
        f"w{w}-{i}" for w in range(WORKERS) for i in range(SHARED, PER_WORKER)}
    assert sorted(r.hash for r in records) == sorted(expected)
    for record in records:
        assert record.extra["payload"] == [record.extra["writer"]] * 20000
    assert not [p for p in tmp_path.rglob("*.tmp")]


# --- checkpoints -------------------------------------------------------------------------------

def test_checkpoint_round_trip(tmp_path):
    store = Store(tmp_path)
    state = {"encoder.weight": torch.randn(4, 3), "encoder.bias": torch.zeros(4),
             "head.weight": torch.randn(3, 5).t(),  # not contiguous
             "steps": torch.tensor([7], dtype=torch.int64), "half": torch.randn(2, 2).to(torch.bfloat16)}
    path = store.save_checkpoint("run1", state)
    assert path == tmp_path / "checkpoints" / "run1" / "model.safetensors"
    loaded = store.load_checkpoint("run1")
    assert set(loaded) == set(state)
    for key, tensor in state.items():
        assert loaded[key].dtype == tensor.dtype and torch.equal(loaded[key], tensor), key
    assert not list(tmp_path.rglob("*.tmp"))


def test_checkpoint_tied_weights(tmp_path):
    """Two keys sharing storage (tied embeddings and output layer) are both saved and loaded."""
    embedding = torch.nn.Embedding(10, 4)
    output = torch.nn.Linear(4, 10, bias=False)
    output.weight = embedding.weight
    state = {"embed.weight": embedding.weight, "lm_head.weight": output.weight}
    assert state["embed.weight"].data_ptr() == state["lm_head.weight"].data_ptr()
    store = Store(tmp_path)
    store.save_checkpoint("tied", state)
    loaded = store.load_checkpoint("tied")
    assert torch.equal(loaded["embed.weight"], embedding.weight.detach())
    assert torch.equal(loaded["lm_head.weight"], embedding.weight.detach())
    # Loading back into a tied model restores it.
    fresh_embedding, fresh_output = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
    fresh_output.weight = fresh_embedding.weight
    fresh = torch.nn.ModuleDict({"embed": fresh_embedding, "lm_head": fresh_output})
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh_output.weight, embedding.weight)


def test_missing_checkpoint_is_none(tmp_path):
    assert Store(tmp_path).load_checkpoint("never-saved") is None


def test_checkpoint_crash_leaves_nothing(tmp_path, monkeypatch):
    store = Store(tmp_path)
    monkeypatch.setattr(store_module.os, "replace", refuse_rename)
    with pytest.raises(OSError):
        store.save_checkpoint("run1", {"w": torch.ones(2)})
    assert store.load_checkpoint("run1") is None
    assert files_under(tmp_path) == []


def test_default_store_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "elsewhere"))
    assert store_module.default_store() == tmp_path / "elsewhere"
    monkeypatch.delenv("HARNESS_STORE")
    assert store_module.default_store() == Path("runs")


def test_a_compressed_store_is_read_written_and_resumed_as_a_plain_one(tmp_path):
    """`harness compress` rewrites every record as .json.gz with the same content (per-example floats
    to 7 significant digits); the store then writes new records so, and reads, finds and reports both forms."""
    from harness.cli import main
    from tests.synthetic import completed

    store = Store(tmp_path / "s")
    first, second = completed("sentiment", "ce", 1, 0.2), completed("sentiment", "ce", 2, 0.3)
    store.save(first)
    main(["compress", "--store", str(store.root)])
    assert store.compressed and store.record_path("sentiment", "ce", first.hash).name == f"{first.hash}.json.gz"
    assert not list((store.root / "records").rglob("*.json"))
    store.save(second)
    assert store.record_path("sentiment", "ce", second.hash).suffix == ".gz"
    compact = {r.hash: dataclasses.replace(r, test_examples=round_floats(r.test_examples, PUBLISHED_DIGITS))
               for r in (first, second)}
    assert any(e != c for r in (first, second) for e, c in zip(r.test_examples, compact[r.hash].test_examples))
    assert {r.hash: r for r in store.records()} == compact
    assert store.find(second.hash) == compact[second.hash] and store.status("sentiment", "ce", first.hash) == "completed"
    again = store.record_path("sentiment", "ce", first.hash).read_bytes()
    store.save(first)
    assert store.record_path("sentiment", "ce", first.hash).read_bytes() == again  # no timestamp in the bytes
