"""Issue 13, item 6: the report never merges what differs, and says what it cannot read."""
from __future__ import annotations

import dataclasses
import json

import pytest

from harness.cli import main
from harness.store import RunRecord
from tests import synthetic
from tests.synthetic import write_store


def _records_with_one_lr_changed() -> list[RunRecord]:
    """ce and focal on sentiment, 3 seeds; focal's seed 3 trained with another learning rate."""
    records = [synthetic.completed("sentiment", r, s, 0.3) for r in ("ce", "focal") for s in (1, 2, 3)]
    odd = records[-1]
    config = {**odd.config, "settings": {**odd.config["settings"], "lr": 1e-3}}
    records[-1] = dataclasses.replace(odd, config=config)
    return records


def _report(store, tmp_path, *extra):
    main(["report", "--store", str(store.root), "--out", str(tmp_path / "out"), "--resamples", "20",
          "--format", "md", *extra])


def test_a_cell_mixing_settings_is_an_error_naming_what_differs(tmp_path, capsys):
    """Before: the cell's seeds were pooled and a note was the only sign."""
    store = write_store(tmp_path / "s", _records_with_one_lr_changed())
    with pytest.raises(SystemExit) as exit_info:
        _report(store, tmp_path)
    message = str(exit_info.value.code)
    assert "sentiment / focal: its runs differ in more than the seed (settings.lr)" in message
    assert "--allow-mixed" in message and not (tmp_path / "out").exists()


def test_allow_mixed_pools_them_with_a_note(tmp_path, capsys):
    store = write_store(tmp_path / "s", _records_with_one_lr_changed())
    _report(store, tmp_path, "--allow-mixed")
    assert "sentiment / focal: its runs differ in more than the seed (settings.lr); the cell mixes" in \
        capsys.readouterr().out


def test_test_data_and_model_are_part_of_the_key(tmp_path):
    from harness.report.analysis import _differing

    a, b, c = (synthetic.completed("sentiment", "ce", s, 0.3) for s in (1, 2, 3))
    b = dataclasses.replace(b, config={**b.config, "data": {"kind": "local", "md5": {"test": ["other"]}}})
    c = dataclasses.replace(c, model="bert-base-cased")
    assert _differing([a, b, c]) == ["data", "model"]
    assert _differing([a, synthetic.completed("sentiment", "ce", 2, 0.3)]) == [], "the seed alone is no difference"


@pytest.mark.parametrize("content", ["{not json", json.dumps({"something": "else"}), json.dumps([1, 2])])
def test_a_corrupt_or_foreign_file_is_skipped_with_a_warning_and_refused_with_strict(tmp_path, capsys, content):
    store = write_store(tmp_path / "s", [synthetic.completed("sentiment", "ce", s, 0.3) for s in (1, 2, 3)])
    bad = store.root / "records" / "sentiment" / "ce" / "zzzz.json"
    bad.write_text(content)
    _report(store, tmp_path)
    err = capsys.readouterr().err
    assert f"warning: skipped {bad}" in err and (tmp_path / "out").exists()
    with pytest.raises(SystemExit) as exit_info:
        _report(store, tmp_path, "--strict")
    assert str(bad) in str(exit_info.value.code) and "delete it" in str(exit_info.value.code)


def test_a_record_without_config_says_so(tmp_path, capsys):
    store = write_store(tmp_path / "s", [synthetic.completed("sentiment", "ce", 1, 0.3)])
    bad = store.root / "records" / "sentiment" / "ce" / "zzzz.json"
    bad.write_text(json.dumps({"schema_version": 1, "hash": "zzzz", "status": "completed"}))
    with pytest.raises(SystemExit) as exit_info:
        _report(store, tmp_path, "--strict")
    assert f"{bad}: not a run record (no 'config' key; a run record has 'hash', 'status' and 'config')" in \
        str(exit_info.value.code)


@pytest.mark.parametrize("command", ["report", "leaderboard"])
def test_zero_resamples_is_refused_politely(tmp_path, command):
    """Before: a traceback from deep in the bootstrap."""
    store = write_store(tmp_path / "s", [synthetic.completed("sentiment", "ce", s, 0.3) for s in (1, 2, 3)])
    argv = [command, "--store", str(store.root), "--resamples", "0"] + (
        ["--out", str(tmp_path / "out")] if command == "report" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert str(exit_info.value.code) == ("error: --resamples must be at least 1, got 0 (paired-bootstrap resamples "
                                         "for the significance tests; the default is 1000)")


def test_a_seed_stored_twice_is_mixing(tmp_path):
    """E.g. a child run stored before its parent joined its identity and again after: two hashes, one
    seed; pooled, the seed would count twice."""
    records = [synthetic.completed("sentiment", "ce", s, 0.3) for s in (1, 2, 3)]
    again = records[0]
    records.append(dataclasses.replace(again, hash="0" * 16, config={**again.config, "parent": "f" * 16}))
    store = write_store(tmp_path / "s", records)
    with pytest.raises(SystemExit, match=r"sentiment / ce: .*1 seed\(s\) run twice: 1"):
        _report(store, tmp_path)
