"""Issue 13, item 8: `harness evaluate` scores a stored run's kept checkpoint on other test data
without retraining, as a separate record the report shows."""
from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.store import Store
from tests.helpers import write_grid


def _run(tmp_path, data_dir, *extra):
    """focal runs: no other strategy starts from them, so only --keep-checkpoints keeps their weights."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["focal"], seeds=(1, 2, 3), epochs=1,
                      max_train=16, max_eval=16)
    main(["run", "--grid", "--grid-file", str(grid), "--data-dir", str(data_dir), "--store", str(tmp_path / "s"),
          "--quiet", *extra])
    return Store(tmp_path / "s")


def test_evaluate_without_a_kept_checkpoint_says_how_to_get_one(tmp_path, data_dir):
    store = _run(tmp_path, data_dir)
    record = next(store.records())
    assert record.checkpoint is None and not store.checkpoint_path(record.hash).exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", record.hash, "--split", "validation", "--store", str(store.root)])
    message = str(exit_info.value.code)
    assert "has no kept checkpoint" in message and "--keep-checkpoints --force" in message
    with pytest.raises(SystemExit, match="no run 'feedfacefeedface'"):
        main(["evaluate", "feedfacefeedface", "--split", "test", "--store", str(store.root)])


def test_evaluate_on_other_files_stores_a_linked_record_the_report_shows(tmp_path, data_dir, capsys):
    store = _run(tmp_path, data_dir, "--keep-checkpoints")
    records = sorted(store.records(), key=lambda r: r.seed)
    record = records[0]
    assert record.checkpoint["bytes"] == store.checkpoint_path(record.hash).stat().st_size > 0
    assert "kept checkpoint" in capsys.readouterr().err
    other = tmp_path / "other.tsv"  # 20 dev sentences as another test set
    other.write_text("\n".join((data_dir / "sst2" / "dev.tsv").read_text().splitlines()[:20]) + "\n")
    before = json.loads(store.record_path(record.task, record.reward, record.hash).read_text())
    main(["evaluate", record.hash, "--test-files", str(other), "--store", str(store.root), "--quiet"])
    (evaluation,) = store.evaluations()
    assert evaluation["run"] == record.hash and evaluation["n_examples"] == 20
    assert evaluation["data"]["files"][0]["md5"] and evaluation["data"]["files"][0]["path"] == str(other.resolve())
    assert 0 <= evaluation["test"]["accuracy"] <= 100
    assert json.loads(store.record_path(record.task, record.reward, record.hash).read_text()) == before, \
        "the run's record is untouched"
    # the same weights on the run's own test rows give the run's own test score
    own = tmp_path / "own.tsv"
    own.write_text("\n".join((data_dir / "sst2" / "test.tsv").read_text().splitlines()[:16]) + "\n")
    main(["evaluate", record.hash, "--test-files", str(own), "--store", str(store.root), "--quiet"])
    scores = {e["data"]["files"][0]["path"]: e["test"]["accuracy"] for e in store.evaluations()}
    assert scores[str(own.resolve())] == pytest.approx(record.test["accuracy"])
    main(["report", "--store", str(store.root), "--out", str(tmp_path / "out"), "--format", "md",
          "--resamples", "20"])
    page = "\n".join(p.read_text() for p in (tmp_path / "out").glob("*.md"))
    assert "Evaluations of stored runs on other test data" in page and "other.tsv" in page


def test_evaluate_needs_the_task_s_number_of_files(tmp_path, data_dir):
    store = _run(tmp_path, data_dir, "--keep-checkpoints")
    record = next(store.records())
    with pytest.raises(SystemExit, match="reads its test data from 1 file"):
        main(["evaluate", record.hash, "--test-files", "a.tsv", "b.tsv", "--store", str(store.root)])
