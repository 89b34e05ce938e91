"""`--report-to`: a real (tiny) run logged to each tracker offline and read back with the tracker's
own reader: TensorBoard's event files, MLflow's client on a `file:` store, W&B's offline run, Trackio's
local database; and the report uploaded as an artifact."""
from __future__ import annotations

import pytest

from harness.cli import main
from harness.store import Store
from harness.trackers import log_record, open_trackers, run_events
from tests.helpers import write_grid


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_dir):
    """One completed run of a tiny model, logged to TensorBoard and MLflow as it finished."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("trackers")  # the grid's end uploads its report to MLflow too
    grid = write_grid(root / "g.yaml", ["sentiment"], epochs=2, max_train=16, max_eval=8, log_every=1, patience=5)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        main(["run", "--grid", "--grid-file", str(grid), "--store", str(root / "s"), "--data-dir", str(data_dir),
              "--quiet", "--report-to", "tensorboard,mlflow"])
    (record,) = Store(root / "s").records()
    return root, record


def test_run_events_cover_steps_epochs_and_test(tiny_run):
    _, record = tiny_run
    events = run_events(record)
    assert [s for s, _ in events] == sorted(s for s, _ in events)
    assert sum("train/loss" in m for _, m in events) == len(record.steps) >= 4
    assert sum("validation/accuracy" in m for _, m in events) == 2 and "test/accuracy" in events[-1][1]


def test_tensorboard_event_files(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, record = tiny_run
    (folder,) = (root / "s" / "tensorboard" / "tiny").iterdir()
    assert record.hash[:8] in folder.name and "sentiment-ce-seed1" in folder.name
    events = EventAccumulator(str(folder)).Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [s["step"] for s in record.steps]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([s["loss"] for s in record.steps])
    assert len(events.Scalars("validation/accuracy")) == 2
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(record.test["accuracy"])
    assert "config/text_summary" in events.Tags()["tensors"]


def test_mlflow_run_and_report_artifact(tiny_run, monkeypatch):
    from mlflow.tracking import MlflowClient

    root, record = tiny_run
    client = MlflowClient(tracking_uri=(root / "s" / "mlruns").as_uri())
    experiment = client.get_experiment_by_name("tiny")
    (run,) = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name != "report"]
    assert run.data.tags["grid"] == "tiny" and run.data.params["reward"] == "ce"
    assert run.data.params["settings.model"] == "tiny-bert"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [s["step"] for s in record.steps]
    assert run.data.metrics["test/accuracy"] == pytest.approx(record.test["accuracy"])
    grid_report = next(r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "report")
    assert "report/index.html" in {a.path for a in client.list_artifacts(grid_report.info.run_id, "report")}
    assert (root / "s" / "reports" / "tiny" / "manifest.json").exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    main(["report", "--store", str(root / "s"), "--out", str(root / "report"), "--format", "md",
          "--resamples", "10", "--filter", "grid=tiny", "--report-to", "mlflow,tensorboard"])
    latest = max((r for r in client.search_runs([experiment.experiment_id]) if r.info.run_name == "report"),
                 key=lambda r: r.info.start_time)
    listed = {a.path for a in client.list_artifacts(latest.info.run_id, "report")}
    assert "report/manifest.json" in listed and any(p.endswith(".md") for p in listed)


def test_wandb_offline(tiny_run, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    _, record = tiny_run
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log_record(open_trackers(["wandb"], tmp_path), record, "tiny")
    import wandb

    wandb.teardown()  # W&B's service writes the offline file in the background: wait until it has
    (run_dir,) = (tmp_path / "wandb" / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("*.wandb")
    from wandb.proto import wandb_internal_pb2

    rows, config = [], {}
    for data in _wandb_records(log.read_bytes()):
        item = wandb_internal_pb2.Record()
        item.ParseFromString(data)
        if item.HasField("history"):
            rows.append({i.key or "/".join(i.nested_key): i.value_json for i in item.history.item})
        if item.HasField("run"):
            config.update({i.key: i.value_json for i in item.run.config.update})
            assert item.run.run_group == "tiny"
    assert sum("train/loss" in r for r in rows) == len(record.steps)
    assert any("test/accuracy" in r for r in rows) and '"ce"' in config["reward"]


def _wandb_records(blob: bytes) -> list[bytes]:
    """The protobuf records of a W&B offline `.wandb` file: after a 7-byte header, LevelDB-log style
    blocks of 32 KiB holding chunks (4-byte CRC, 2-byte length, 1-byte type: 1 full, 2 first,
    3 middle, 4 last). W&B ships no Python reader for it any more."""
    import struct

    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(blob):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", blob[pos:pos + 7])
        chunk, pos = blob[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            records.append(pending)
    return records


def test_trackio_local_database(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path))  # read when trackio is first imported
    pytest.importorskip("trackio")
    _, record = tiny_run
    log_record(open_trackers(["trackio"], tmp_path), record, "tiny")
    import trackio.sqlite_storage as storage

    assert (tmp_path / "tiny.db").exists()
    logs = storage.SQLiteStorage.get_logs("tiny", next(iter(storage.SQLiteStorage.get_runs("tiny"))))
    assert sum("train/loss" in row for row in logs) == len(record.steps)


def test_unknown_tracker_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--grid", "--report-to", "neptune"])
    assert "unknown tracker" in str(exit_info.value.code) and "tensorboard" in str(exit_info.value.code)
