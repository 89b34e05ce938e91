"""RunRecord: the three constructors round-trip through JSON, unknown keys survive, and the
schema-1 records written before RunRecord existed (tests/data/records_v1) load unchanged and
still make a report."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.store import SCHEMA_VERSION, RunRecord, Store
from tests.synthetic import completed, config, not_completed

V1 = Path(__file__).resolve().parent / "data" / "records_v1"
V1_RUNS = {  # (task, reward) -> (hash, main metric, test score, init_from, model)
    ("ner", "ce"): ("6877d374544dcf27", "f1", 0.0, None, "tiny-bert"),
    ("sentiment", "dpo"): ("d272b8f24991a7a5", "accuracy", 62.5, "8af55419595a524f", "tiny-bert"),
    ("translation", "rlhf"): ("14e40275229af264", "bleu_lc", 0.0, "9331f15b7f3752d4", "tiny-bert2bert"),
}


def json_round_trip(record: RunRecord) -> RunRecord:
    """Through the same serialisation as the store's files."""
    return RunRecord.from_json(json.loads(json.dumps(record.to_json(), default=str)))


# ---- constructors and round trips ---------------------------------------------------------------

def test_completed_round_trip(tmp_path):
    record = completed("translation", "reinforce", 2, 0.2, sampling=True, init_from="0123456789abcdef")
    cfg = config("translation", "reinforce", 2)
    assert record.hash == cfg.run_hash() and record.config == cfg.identity()
    assert (record.task, record.reward, record.seed, record.reward_params) == ("translation", "reinforce", 2, {})
    assert record.score == record.test[record.main_metric] and record.why == ""
    assert json_round_trip(record) == record
    store = Store(tmp_path)
    store.save(record)
    assert list(store.records()) == [record]
    assert store.status("translation", "reinforce", record.hash) == "completed"


@pytest.mark.parametrize("status", ["failed", "refused"])
def test_not_completed_round_trip(tmp_path, status):
    record = not_completed("ner", "dice", 1, status)
    assert record.status == status and record.score is None and record.why
    assert json_round_trip(record) == record
    stored = record.to_json()  # only the fields this kind of record has, as the schema-1 writers wrote
    assert list(stored) == ["schema_version", "hash", "status", "config",
                            *(["error", "traceback"] if status == "failed" else ["reason"])]
    Store(tmp_path).save(record)
    assert list(Store(tmp_path).records()) == [record]


def test_failed_from_an_exception_with_the_oom_retry():
    cfg = config("ner", "ce", 1)
    retry = {"batch_size": 4, "grad_accum": 2, "first_error": "OutOfMemoryError: CUDA out of memory"}
    record = RunRecord.failed(cfg, MemoryError("still too big"), "Traceback ...", oom_retry=retry)
    assert record.error == "MemoryError: still too big" and record.why == record.error
    assert list(record.to_json())[-3:] == ["error", "traceback", "oom_retry"]
    assert json_round_trip(record) == record


def test_identity_dict_names_the_run_as_its_config_does():
    cfg = config("sentiment", "focal", 3)
    assert RunRecord.refused(cfg.identity(), "no").hash == RunRecord.refused(cfg, "no").hash == cfg.run_hash()


def test_unknown_keys_survive_a_round_trip(tmp_path):
    """A record written by a newer harness (an extra field) is read and rewritten without loss."""
    newer = {**completed("sentiment", "ce", 1, 0.1).to_json(), "energy_joules": 12.5, "notes": {"by": "future"}}
    record = RunRecord.from_json(newer)
    assert record.extra == {"energy_joules": 12.5, "notes": {"by": "future"}}
    assert record.to_json() == newer and list(record.to_json()) == list(newer)
    path = Store(tmp_path).save(record)
    assert json.loads(path.read_text()) == json.loads(json.dumps(newer))


def test_records_are_immutable():
    record = completed("sentiment", "ce", 1, 0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "failed"  # type: ignore[misc]


# ---- records written before RunRecord (schema 1) -------------------------------------------------

def test_v1_records_load_with_their_fields():
    records = list(Store(V1).records())
    assert [(r.task, r.reward) for r in records] == sorted(V1_RUNS)
    for r in records:
        run_hash, metric, score, init_from, model = V1_RUNS[(r.task, r.reward)]
        assert isinstance(r, RunRecord) and r.schema_version == SCHEMA_VERSION == 1
        assert (r.hash, r.status, r.main_metric, r.score, r.init_from, r.model) == \
            (run_hash, "completed", metric, score, init_from, model)
        assert r.seed == 1 and r.reward_params == {} and r.config["data"]["kind"] == "local"
        assert r.best_epoch == 1 and r.validation == r.history[0]["validation"] and len(r.test_examples) == 16
        assert r.timing["train_seconds"] > 0 and r.environment["device"] == "cpu" and r.steps
        assert r.error is r.reason is r.oom_retry is None and r.extra == {}
    assert Store(V1).status("translation", "rlhf", "14e40275229af264") == "completed"


def test_v1_records_are_rewritten_byte_for_byte(tmp_path):
    """Read and saved again, a schema-1 record is the same file: stores and hashes stay valid."""
    for path in sorted((V1 / "records").glob("*/*/*.json")):
        record = RunRecord.from_json(json.loads(path.read_text()))
        assert Store(tmp_path).save(record).read_bytes() == path.read_bytes(), path


@pytest.mark.parametrize("legacy", [
    {"error": "RuntimeError: boom", "traceback": "Traceback ...\nRuntimeError: boom"},  # recipe
    {"error": "RuntimeError: boom", "traceback": "Traceback ...",
     "oom_retry": {"batch_size": 4, "grad_accum": 2, "first_error": "OutOfMemoryError: ..."}},  # after a retry
    {"error": "the worker process died (exit code -9)"},  # pool: no traceback
    {"reason": "dice does not support translation"},  # refused
])
def test_v1_failed_and_refused_records_load(legacy):
    """The dicts the schema-1 writers built for runs that did not complete."""
    v1 = json.loads(next((V1 / "records" / "ner" / "ce").glob("*.json")).read_text())
    stored = {"schema_version": 1, "hash": v1["hash"], "status": "refused" if "reason" in legacy else "failed",
              "config": v1["config"], **legacy}
    record = RunRecord.from_json(stored)
    assert record.task == "ner" and record.why == (legacy.get("reason") or legacy["error"])
    assert record.traceback == legacy.get("traceback") and record.oom_retry == legacy.get("oom_retry")
    assert record.to_json() == stored and list(record.to_json()) == list(stored)


def test_report_renders_from_v1_records(tmp_path, capsys):
    out = tmp_path / "report"
    main(["report", "--store", str(V1), "--out", str(out), "--resamples", "50"])
    assert (out / "index.html").exists() and (out / "summary.md").exists()
    payload = json.loads((out / "summary.json").read_text())
    assert {(c["task"], c["strategy"]) for c in payload["cells"]} == set(V1_RUNS)
    assert {(r["task"], r["strategy"]): r["score"] for r in payload["runs"]} == \
        {key: score for key, (_, _, score, _, _) in V1_RUNS.items()}
    assert "## sentiment" in capsys.readouterr().out
    assert not list(V1.rglob("*.tmp")) and not (V1 / "sessions").exists(), "the fixture store is left as it was"


def test_report_marks_what_v1_records_lack(tmp_path):
    """The v1 records predate calibration: ner and sentiment measure it now, so their leaderboards and
    the guards table keep the ECE, NLL and Brier columns, as —, and a warning counts the records;
    translation has no such columns. Each cell has one seed: no test, no rank."""
    out = tmp_path / "report"
    main(["report", "--store", str(V1), "--out", str(out), "--resamples", "50", "--format", "md,json"])
    payload = json.loads((out / "summary.json").read_text())
    (note,) = [n for n in payload["notes"] if n.startswith("no calibration statistics")]
    assert note.startswith("no calibration statistics in 2 record(s) (ner: 1, sentiment: 1)")
    assert note in (out / "methods.md").read_text()
    for task in ("ner", "sentiment"):
        board = (out / f"leaderboard_{task}.md").read_text().splitlines()
        header = next(line for line in board if line.startswith("| rank"))
        cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in board[board.index(header) + 2].split("|")]))
        assert cells["ECE"] == cells["NLL"] == cells["Brier"] == "—" and cells["rank"] == "—"
    assert "ECE" not in (out / "leaderboard_translation.md").read_text()
    guards = (out / "guards.md").read_text()
    assert "| ECE " in guards and "| ner " in guards
    assert any(n.startswith("one seed in every cell") for n in payload["notes"])
    assert not any(c["testable"] for c in payload["comparisons"])
