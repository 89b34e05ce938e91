"""Experiment trackers: `--report-to tensorboard,wandb,mlflow,trackio` (none by default).

Each harness run becomes one tracker run, grouped by the grid's name (TensorBoard: a folder per
grid; W&B: the run group; MLflow: the experiment; Trackio: the project), holding the resolved
config, every logged training term at its step, the validation metrics of each epoch and the final
test metrics. The report can be uploaded as an artifact where the tracker has artifacts (W&B,
MLflow). Runs are logged from their stored record when they finish, in the process that drives
the grid, so local workers and Ray tasks need no tracker of their own (nor its credentials).

An adapter implements four calls (`Tracker`); `log_record` and `log_report` drive them. Each
adapter imports its package when used: `pip install 'reward-harness[track]'` installs them all.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.config import ConfigError
from harness.overrides import cell_name, compact_yaml
from harness.store import RunRecord, Store


class Tracker(Protocol):
    artifacts: bool  # whether `artifact` uploads (TensorBoard and Trackio have no artifacts)

    def start(self, name: str, group: str, config: dict[str, Any]) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def artifact(self, path: Path) -> None:
        """Uploads the folder `path` (only called where `artifacts`)."""

    def finish(self) -> None: ...


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"settings": {"lr": 1}} -> {"settings.lr": 1}: for trackers whose parameters are flat."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


@dataclass
class TensorBoard:
    """Event files under `root/<grid>/<run>`; the config as text (TensorBoard has no artifacts)."""

    root: Path
    artifacts = False
    _writer: Any = None

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(self.root / group / name))
        self._writer.add_text("config", f"```\n{compact_yaml(config)}\n```")

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def finish(self) -> None:
        self._writer.close()


@dataclass
class WandB:
    """Project `$WANDB_PROJECT` (default reward-harness), group = grid; `WANDB_MODE=offline` works."""

    root: Path
    artifacts = True
    _run: Any = None

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        import wandb

        self.root.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "reward-harness"), group=group, name=name,
                               config=config, dir=str(self.root), reinit="finish_previous")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def artifact(self, path: Path) -> None:
        import wandb

        art = wandb.Artifact(f"report-{self._run.group or 'harness'}", type="report")
        art.add_dir(str(path))
        self._run.log_artifact(art)

    def finish(self) -> None:
        self._run.finish()


@dataclass
class MLflow:
    """Experiment = grid; tracking URI `$MLFLOW_TRACKING_URI`, else a `file:` store under the store."""

    root: Path
    artifacts = True
    _run: Any = None

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):  # no server: MLflow's file store under the store
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for the opt-in
            mlflow.set_tracking_uri(self.root.resolve().as_uri())
        mlflow.set_experiment(group)
        self._run = mlflow.start_run(run_name=name, tags={"grid": group})
        mlflow.log_params({k: str(v)[:6000] for k, v in _flat(config).items()})

    def log(self, metrics: dict[str, float], step: int) -> None:
        import mlflow

        mlflow.log_metrics({k.replace("@", "_"): v for k, v in metrics.items()}, step=step)

    def artifact(self, path: Path) -> None:
        import mlflow

        mlflow.log_artifacts(str(path), artifact_path="report")

    def finish(self) -> None:
        import mlflow

        mlflow.end_run()


@dataclass
class Trackio:
    """Project = grid; the database under the store unless `$TRACKIO_DIR` says otherwise (no artifacts)."""

    root: Path
    artifacts = False
    _trackio: Any = None

    def start(self, name: str, group: str, config: dict[str, Any]) -> None:
        os.environ.setdefault("TRACKIO_DIR", str(self.root.resolve()))  # read when trackio is imported
        import trackio

        self._trackio = trackio
        trackio.init(project=group, name=name, config=_flat(config))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._trackio.log(metrics, step=step)

    def finish(self) -> None:
        self._trackio.finish()


# name -> (adapter, folder under the store, the package it needs)
TRACKERS: dict[str, tuple[Callable[[Path], Tracker], str, str]] = {
    "tensorboard": (TensorBoard, "tensorboard", "tensorboard"),
    "wandb": (WandB, "wandb", "wandb"),
    "mlflow": (MLflow, "mlruns", "mlflow"),
    "trackio": (Trackio, "trackio", "trackio"),
}


def open_trackers(names: list[str] | None, store_root: Path) -> list[Tracker]:
    """The adapters named (`--report-to`); unknown names and missing packages are refused up front."""
    import importlib.util

    chosen = []
    for name in names or []:
        if name == "none":
            continue
        if name not in TRACKERS:
            raise ConfigError(f"--report-to {name!r}: unknown tracker; known: {', '.join(TRACKERS)}, none")
        adapter, folder, package = TRACKERS[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"--report-to {name} needs the {package} package: pip install 'reward-harness[track]'")
        chosen.append(adapter(store_root / folder))
    return chosen


def run_events(record: RunRecord) -> list[tuple[int, dict[str, float]]]:
    """(step, metrics) in step order: every logged training step (`train/...`), each epoch's
    validation (`validation/...`, at the epoch's last logged step) and the test (`test/...`, last)."""
    events = [(s["step"], {f"train/{k}": float(v) for k, v in s.items() if k not in ("step", "epoch")})
              for s in record.steps]
    step = 0
    for epoch in record.history:
        step = max([s["step"] for s in record.steps if s.get("epoch") == epoch["epoch"]] or [step])
        events.append((step, {"epoch": epoch["epoch"],
                              **{f"validation/{k}": float(v) for k, v in epoch["validation"].items()
                                 if isinstance(v, (int, float))}}))
    if record.test:
        events.append((step, {f"test/{k}": float(v) for k, v in record.test.items() if isinstance(v, (int, float))}))
    return sorted(events, key=lambda e: e[0])


def log_record(trackers: list[Tracker], record: RunRecord, group: str) -> None:
    """One tracker run per harness run, from its record: config, training terms, validation, test."""
    name = f"{record.task}-{cell_name(record.reward, record.reward_params)}-seed{record.seed}-{record.hash[:8]}"
    config = {**record.config, "status": record.status, "model": record.model, "best_epoch": record.best_epoch}
    for tracker in trackers:
        tracker.start(name, group, config)
        for step, metrics in run_events(record):
            tracker.log(metrics, step)
        tracker.finish()


def upload_grid_report(trackers: list[Tracker], store: Store, grid: str) -> None:
    """At the end of a grid, where a tracker keeps artifacts: the grid's report (the runs its
    sessions ran) written under `<store>/reports/<grid>` and uploaded."""
    from harness.report.filters import Filters
    from harness.report.writers import write_report

    records = Filters(grid=grid).select(store)
    if not any(t.artifacts for t in trackers) or not any(r.status == "completed" for r in records):
        return
    out = store.root / "reports" / grid
    write_report(store, out, echo=False, records=records)
    log_report(trackers, out, grid)
    logging.getLogger("harness").info("report of grid %s in %s, uploaded to the trackers", grid, out)


def log_report(trackers: list[Tracker], out: Path, group: str) -> None:
    """Uploads the report folder `out` as an artifact of a tracker run `report` in `group`, on the
    trackers that have artifacts."""
    for tracker in trackers:
        if tracker.artifacts:
            tracker.start("report", group, {"report": str(out)})
            tracker.artifact(out)
            tracker.finish()
        else:
            logging.getLogger("harness").info("%s keeps no artifacts: the report is not uploaded there",
                                              type(tracker).__name__)
