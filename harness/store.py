"""The results store: one JSON record per run (a `RunRecord`), written atomically, plus optional
checkpoints.

Layout under the store directory:
  records/<task>/<reward>/<run hash>.json   the run's record (status completed, failed or refused)
  checkpoints/<run hash>/model.safetensors  selected weights of runs other strategies start from
  sessions/<UTC time>-<pid>.json            one per `harness run`: wall time, GPU utilisation
A record is written to a temporary file in the same folder, flushed to disk and renamed over the
final name, so a killed run never leaves a file that looks like a record; readers ignore the
temporary files. Rename is atomic on POSIX, so concurrent writers never interleave.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol

from harness.config import identity_hash

if TYPE_CHECKING:  # torch only for checkpoints, imported there: `harness list` and `--help` stay fast
    import torch

SCHEMA_VERSION = 1


class StoreError(RuntimeError):
    pass


class _Named(Protocol):
    """What a record needs of a run configuration (a `harness.config.RunConfig`)."""

    def identity(self) -> dict[str, Any]: ...

    def run_hash(self) -> str: ...


@dataclass(frozen=True)
class RunRecord:
    """One run's outcome, as stored: typed so writers and readers agree on the fields.

    `status` says which fields matter: a completed run has everything from `model` to
    `environment`; a failed one `error` (and `traceback`); a refused one `reason`. `oom_retry` is
    set when the run was retried with gradient accumulation after running out of GPU memory.
    Nested values (metrics, history, timing, ...) stay JSON dicts: their keys vary by task and
    strategy. Keys a reader does not know (written by a newer harness) are kept in `extra` and
    written back unchanged.
    """

    hash: str
    status: str  # "completed", "failed" or "refused"
    config: dict[str, Any]  # RunConfig.identity(): what the hash names
    model: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # hash of the run whose checkpoint this one started from
    main_metric: str | None = None
    best_epoch: int | None = None  # 1-based; the epoch whose weights were tested
    validation: dict[str, float] = field(default_factory=dict)  # the best epoch's scores
    test: dict[str, float] = field(default_factory=dict)
    metric_info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per epoch
    steps: list[dict[str, Any]] = field(default_factory=list)  # logged training steps
    test_examples: list[dict[str, Any]] = field(default_factory=list)  # prediction, reference, statistics
    timing: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    reason: str | None = None
    oom_retry: dict[str, Any] | None = None
    model_kind: str | None = None  # set where it is not the task's own kind (e.g. causal_lm)
    policy_dropout: bool | None = None  # whether dropout was on while the model trained (None: older records)
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- constructors: the three ways a run ends ----

    @classmethod
    def completed(cls, cfg_or_identity: _Named | Mapping[str, Any], *, model: str, main_metric: str,
                  best_epoch: int, validation: dict[str, float], test: dict[str, float],
                  history: list[dict[str, Any]], test_examples: list[dict[str, Any]], timing: dict[str, Any],
                  environment: dict[str, Any], generation: dict[str, Any] | None = None,
                  init_from: str | None = None, metric_info: dict[str, Any] | None = None,
                  steps: list[dict[str, Any]] | None = None, oom_retry: dict[str, Any] | None = None,
                  model_kind: str | None = None, policy_dropout: bool | None = None) -> RunRecord:
        """Keyword-only: many same-typed dicts, easy to swap by position."""
        identity, run_hash = _named(cfg_or_identity)
        return cls(hash=run_hash, status="completed", config=identity, model=model, generation=generation or {},
                   init_from=init_from, main_metric=main_metric, best_epoch=best_epoch, validation=validation,
                   test=test, metric_info=metric_info or {}, history=history, steps=steps or [],
                   test_examples=test_examples, timing=timing, environment=environment, oom_retry=oom_retry,
                   model_kind=model_kind, policy_dropout=policy_dropout)

    @classmethod
    def failed(cls, cfg_or_identity: _Named | Mapping[str, Any], error: str | BaseException,
               traceback: str | None = None, oom_retry: dict[str, Any] | None = None) -> RunRecord:
        """`error` as "Type: message" (an exception is formatted so)."""
        if isinstance(error, BaseException):
            error = f"{type(error).__name__}: {error}"
        identity, run_hash = _named(cfg_or_identity)
        return cls(hash=run_hash, status="failed", config=identity, error=error, traceback=traceback,
                   oom_retry=oom_retry)

    @classmethod
    def refused(cls, cfg_or_identity: _Named | Mapping[str, Any], reason: str) -> RunRecord:
        identity, run_hash = _named(cfg_or_identity)
        return cls(hash=run_hash, status="refused", config=identity, reason=reason)

    # ---- conveniences ----

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def reward(self) -> str:
        return self.config["reward"]

    @property
    def seed(self) -> int:
        return self.config["seed"]

    @property
    def reward_params(self) -> dict[str, Any]:
        return self.config.get("reward_params") or {}

    @property
    def score(self) -> float | None:
        """test[main_metric]; None for a run without one (failed, refused)."""
        return self.test.get(self.main_metric) if self.main_metric is not None else None

    @property
    def why(self) -> str:
        """Why the run did not complete (the refusal's reason or the error); empty if it did."""
        return self.reason or self.error or ""

    # ---- JSON ----

    def to_json(self) -> dict[str, Any]:
        """The JSON object stored on disk (not a string; `json.dumps` it). Keys and order are schema
        1's, so a record read and saved again is byte-identical: a completed record holds every
        result field, others only the fields they set; then `extra`."""
        out: dict[str, Any] = {"schema_version": self.schema_version, "hash": self.hash, "status": self.status,
                               "config": self.config}
        for name in _RESULT_FIELDS:
            value = getattr(self, name)
            if self.status == "completed" or value != _DEFAULTS[name]:
                out[name] = value
        for name in _OUTCOME_FIELDS:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return {**out, **{k: v for k, v in self.extra.items() if k not in out}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record from its stored JSON object (any schema-1 record); unknown keys go to `extra`.
        The schema version is checked by `Store`, which can name the file."""
        missing = [key for key in ("hash", "status", "config") if key not in data]
        if missing:
            raise ValueError(f"not a run record: no {', '.join(missing)}")
        known = {k: v for k, v in data.items() if k in _FIELDS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _FIELDS})


_FIELDS = {f.name for f in dataclasses.fields(RunRecord)} - {"extra"}
_RESULT_FIELDS = ("model", "generation", "init_from", "main_metric", "best_epoch", "validation", "test",
                  "metric_info", "history", "steps", "test_examples", "timing", "environment")
_OUTCOME_FIELDS = ("error", "traceback", "reason", "oom_retry", "model_kind", "policy_dropout")  # written when set
_DEFAULTS = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
             for f in dataclasses.fields(RunRecord)}


def _named(cfg_or_identity: _Named | Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The identity dict and run hash of a RunConfig or of an identity dict."""
    if isinstance(cfg_or_identity, Mapping):
        identity = dict(cfg_or_identity)
        return identity, identity_hash(identity)
    return cfg_or_identity.identity(), cfg_or_identity.run_hash()


def default_store() -> Path:
    return Path(os.environ.get("HARNESS_STORE", "runs"))


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def record_path(self, task: str, reward: str, run_hash: str) -> Path:
        return self.root / "records" / task / reward / f"{run_hash}.json"

    def checkpoint_path(self, run_hash: str) -> Path:
        return self.root / "checkpoints" / run_hash / "model.safetensors"

    def status(self, task: str, reward: str, run_hash: str) -> str | None:
        """The stored status of a run ("completed", "failed", "refused"), or None if never stored."""
        record = self.record(task, reward, run_hash)
        return record.status if record is not None else None

    def record(self, task: str, reward: str, run_hash: str) -> RunRecord | None:
        """The stored record of a run, or None if never stored."""
        path = self.record_path(task, reward, run_hash)
        return self._read_record(path) if path.exists() else None

    def save(self, record: RunRecord) -> Path:
        """Writes the record under its task, reward and hash, replacing an earlier one (--force)."""
        path = self.record_path(record.task, record.reward, record.hash)
        data = json.dumps(record.to_json(), indent=1, sort_keys=False, default=str).encode()
        _atomic_write(path, lambda fh: fh.write(data))
        return path

    def save_checkpoint(self, run_hash: str, state_dict: dict[str, torch.Tensor]) -> Path:
        from safetensors.torch import save

        path = self.checkpoint_path(run_hash)
        # Tied weights share storage; safetensors wants each tensor once and contiguous.
        blob = save({k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()})
        _atomic_write(path, lambda fh: fh.write(blob))
        return path

    def load_checkpoint(self, run_hash: str) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        path = self.checkpoint_path(run_hash)
        return load_file(str(path)) if path.exists() else None

    def save_session(self, session: dict[str, Any]) -> Path:
        """Writes one `harness run` invocation's summary (atomically, like a record)."""
        stamp = session["started"].replace(":", "").replace("-", "")
        path = self.root / "sessions" / f"{stamp}-{os.getpid()}.json"
        data = json.dumps({"schema_version": SCHEMA_VERSION, **session}, indent=1, default=str).encode()
        _atomic_write(path, lambda fh: fh.write(data))
        return path

    def sessions(self) -> list[dict[str, Any]]:
        """Every stored session summary, oldest first."""
        return [self._read(path) for path in sorted((self.root / "sessions").glob("*.json"))]

    def records(self) -> Iterator[RunRecord]:
        """Every stored record; a record of another schema version is refused with a message."""
        for path in sorted((self.root / "records").glob("*/*/*.json")):
            yield self._read_record(path)

    @classmethod
    def _read_record(cls, path: Path) -> RunRecord:
        try:
            return RunRecord.from_json(cls._read(path))
        except (ValueError, TypeError) as err:
            raise StoreError(f"{path}: not a run record ({err}); delete it and rerun the grid, which "
                             "recreates it") from None

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: not a readable JSON file ({err}); delete it and rerun the grid, "
                             "which recreates a run's record (a session summary is only a log)") from None
        if not isinstance(record, dict):
            raise StoreError(f"{path}: not a JSON object; delete it and rerun the grid")
        version = record.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path}: record schema version {version!r}, this harness reads version "
                             f"{SCHEMA_VERSION}; use the harness version that wrote it or rerun into a new "
                             "--store")
        return record
