"""The results store: one JSON record per run (a `RunRecord`), written atomically, plus optional
checkpoints.

Layout under the store directory:
  records/<task>/<reward>/<run hash>.json   the run's record (status completed, failed or refused)
  checkpoints/<run hash>/model.safetensors  selected weights of runs other strategies start from (of
                                            every run with `run --keep-checkpoints`)
  sessions/<UTC time>-<pid>.json            one per `harness run`: wall time, GPU utilisation
  claims/<run hash>.claim                   a run being trained now: its owner (host, pid)
  evaluations/<task>/<reward>/<run hash>-<data id>.json   `harness evaluate` of a run on other test data
  COMPRESSED                                marks a compressed store: records are written as
                                            <run hash>.json.gz (`harness store compress`)
Records of either form are read from any store, so a store published in the repository (compressed,
without checkpoints) is read by `report` and resumed by `run` as it is.
A record is written to a temporary file in the same folder, flushed to disk and renamed over the
final name, so a killed run never leaves a file that looks like a record; readers ignore the
temporary files, and `clean_orphans` removes those a killed process left. Rename is atomic on
POSIX, so concurrent writers never interleave. Files are created readable by the group (the umask
decides, as for any file), so a store can be shared.

Several grids can share one store, on one machine or over a shared file system: before a run
trains, its grid takes the run's claim, a file created with O_EXCL (only one creator succeeds)
holding the owner's host and pid, whose modification time is the owner's heartbeat (refreshed by a
thread of the grid while it holds the claim). A claim whose heartbeat is older than
`claim_stale_seconds()` ($HARNESS_CLAIM_STALE, default 300 s), or whose owner on this host is no
longer alive, is stale and taken over: a killed grid's runs are rerun by whichever grid comes next.
"""
from __future__ import annotations

import dataclasses
import errno
import gzip
import json
import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol

from harness.config import identity_hash

if TYPE_CHECKING:  # torch only for checkpoints, imported there: `harness list` and `--help` stay fast
    import torch

SCHEMA_VERSION = 1
COMPRESSED_MARKER = "COMPRESSED"  # a file in a store whose new records are written gzip-compressed
PUBLISHED_DIGITS = 7  # significant digits of per-example floats in a compressed store


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
    checkpoint: dict[str, Any] | None = None  # the stored selected weights: file (in the store) and bytes
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
                  model_kind: str | None = None, policy_dropout: bool | None = None,
                  checkpoint: dict[str, Any] | None = None) -> RunRecord:
        """Keyword-only: many same-typed dicts, easy to swap by position."""
        identity, run_hash = _named(cfg_or_identity)
        return cls(hash=run_hash, status="completed", config=identity, model=model, generation=generation or {},
                   init_from=init_from, main_metric=main_metric, best_epoch=best_epoch, validation=validation,
                   test=test, metric_info=metric_info or {}, history=history, steps=steps or [],
                   test_examples=test_examples, timing=timing, environment=environment, oom_retry=oom_retry,
                   model_kind=model_kind, policy_dropout=policy_dropout, checkpoint=checkpoint)

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
            raise ValueError(f"no {', '.join(repr(k) for k in missing)} key; a run record has 'hash', 'status' "
                             "and 'config'")
        known = {k: v for k, v in data.items() if k in _FIELDS}
        return cls(**known, extra={k: v for k, v in data.items() if k not in _FIELDS})


_FIELDS = {f.name for f in dataclasses.fields(RunRecord)} - {"extra"}
_RESULT_FIELDS = ("model", "generation", "init_from", "main_metric", "best_epoch", "validation", "test",
                  "metric_info", "history", "steps", "test_examples", "timing", "environment")
_OUTCOME_FIELDS = ("error", "traceback", "reason", "oom_retry", "model_kind", "policy_dropout",
                   "checkpoint")  # written when set
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp's 0600 would hide records from the group
_HOST = socket.gethostname()


def claim_stale_seconds() -> float:
    """Seconds without a heartbeat after which a claim, or a temporary file, is another process's
    leftover ($HARNESS_CLAIM_STALE, default 300)."""
    return float(os.environ.get("HARNESS_CLAIM_STALE", 300))


def _owner() -> str:
    return f"{_HOST}:{os.getpid()}"


def _gone(owner: str) -> bool:
    """Whether `owner` ("host:pid") is a process of this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != _HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    return False


def _disk_error(path: Path, err: OSError) -> StoreError | OSError:
    """A full disk (or quota) as one line naming the path; any other error unchanged."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"{path}: no space left on the device ({err.strerror}); free some space or use "
                          "another --store, then rerun the same command to resume")
    return err


def round_floats(value: Any, digits: int) -> Any:
    """`value` with every float inside it to `digits` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    return value


def atomic_write(path: Path, write: Any) -> None:
    """Writes a temporary file named after this process (so `clean_orphans` knows whose it is),
    fsyncs it and renames it over `path`."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_owner()}.", suffix=".tmp")
    except OSError as err:
        raise _disk_error(path, err) from None
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _disk_error(path, err) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Claim:
    """A run this process trains now (see the module's docstring); `refresh` is its heartbeat."""

    path: Path
    owner: str

    def ours(self) -> bool:
        try:
            return json.loads(self.path.read_text())["owner"] == self.owner
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def refresh(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass  # taken over meanwhile (we were stale): the other grid reruns it too; records are atomic

    def release(self) -> None:
        if self.ours():
            self.path.unlink(missing_ok=True)
            try:
                self.path.parent.rmdir()  # the last claim leaves no trace in the store
            except OSError:
                pass  # other claims are held


class Heartbeat:
    """A thread refreshing the claims it holds every tenth of the stale time, while they are held."""

    def __init__(self) -> None:
        self.claims: dict[str, Claim] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True, name="claim-heartbeat")

    def _beat(self) -> None:
        while not self._stop.wait(claim_stale_seconds() / 10):
            for claim in list(self.claims.values()):
                claim.refresh()

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        for claim in self.claims.values():
            claim.release()
        self.claims.clear()


class Store:
    """`keep_checkpoints`: runs save their selected weights (`run --keep-checkpoints`, for `harness
    evaluate`), not only the runs other strategies start from."""

    def __init__(self, root: Path | str, keep_checkpoints: bool = False):
        self.root = Path(root)
        self.keep_checkpoints = keep_checkpoints

    @property
    def compressed(self) -> bool:
        """Whether new records are written gzip-compressed (the store holds a `COMPRESSED` marker)."""
        return (self.root / COMPRESSED_MARKER).exists()

    def record_path(self, task: str, reward: str, run_hash: str) -> Path:
        """Where the run's record is: the stored file of either form, else where it is to be written."""
        plain = self.root / "records" / task / reward / f"{run_hash}.json"
        packed = plain.with_name(plain.name + ".gz")
        if plain.exists() or packed.exists():
            return plain if plain.exists() else packed
        return packed if self.compressed else plain

    def compress(self) -> int:
        """Makes this a compressed store: every record rewritten in the compact form (`save`) as
        .json.gz, new ones written so; how many were rewritten. Checkpoints are left where they are."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / COMPRESSED_MARKER).write_text(
            "Records in this store are gzip-compressed JSON (records/<task>/<reward>/<run hash>.json.gz).\n")
        paths = sorted([*(self.root / "records").glob("*/*/*.json"), *(self.root / "records").glob("*/*/*.json.gz")])
        for path in paths:
            record = self._read_record(path)
            if path.suffix == ".json":
                path.unlink()
            self.save(record)
        return len(paths)

    def checkpoint_path(self, run_hash: str) -> Path:
        return self.root / "checkpoints" / run_hash / "model.safetensors"

    def claim(self, run_hash: str) -> Claim | None:
        """Claims a run for this process (see the module's docstring): the claim, or None while
        another live owner holds it. A stale claim is moved aside (an atomic rename, so one taker
        wins) and taken over."""
        path = self.root / "claims" / f"{run_hash}.claim"
        for _ in range(3):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, _FILE_MODE)
            except FileNotFoundError:
                continue  # the folder was removed by the release of another grid's last claim
            except FileExistsError:
                if not self._stale(path):
                    return None
                aside = path.with_name(f"{path.name}.{_owner()}.stale")
                try:
                    os.rename(path, aside)
                except FileNotFoundError:
                    continue
                if not self._stale(aside):  # another taker's fresh claim, renamed between our check and rename
                    try:
                        os.link(aside, path)
                    except FileExistsError:
                        pass
                    aside.unlink(missing_ok=True)
                    return None
                aside.unlink(missing_ok=True)
                continue
            except OSError as err:
                raise _disk_error(path, err) from None
            with os.fdopen(fd, "w") as fh:
                json.dump({"owner": _owner(), "host": _HOST, "pid": os.getpid(), "claimed": time.time()}, fh)
            return Claim(path, _owner())
        return None

    def claim_free(self, run_hash: str) -> bool:
        """Whether nobody holds the run's claim, or its holder is stale."""
        return self._stale(self.root / "claims" / f"{run_hash}.claim")

    @staticmethod
    def _stale(path: Path) -> bool:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return True
        try:
            owner = json.loads(path.read_text())["owner"]
        except (OSError, ValueError, KeyError, TypeError):
            owner = ""  # being written, or garbage: judged by its age alone
        return age > claim_stale_seconds() or _gone(owner)

    def clean_orphans(self) -> list[Path]:
        """Removes temporary files a killed process left (its pid gone on this host, or older than the
        stale time); returns them."""
        removed = []
        for tmp in [*self.root.glob("**/.*.tmp"), *self.root.glob("claims/*.stale")]:
            marker = f".{_HOST}:"  # temporary files are named ".<name>.<host>:<pid>.<random>.tmp"
            owner = f"{_HOST}:{tmp.name.split(marker, 1)[1].split('.', 1)[0]}" if marker in tmp.name else ""
            try:
                old = time.time() - tmp.stat().st_mtime > claim_stale_seconds()
            except FileNotFoundError:
                continue
            if old or _gone(owner):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return removed

    def status(self, task: str, reward: str, run_hash: str) -> str | None:
        """The stored status of a run ("completed", "failed", "refused"), or None if never stored."""
        record = self.record(task, reward, run_hash)
        return record.status if record is not None else None

    def record(self, task: str, reward: str, run_hash: str) -> RunRecord | None:
        """The stored record of a run, or None if never stored."""
        path = self.record_path(task, reward, run_hash)
        return self._read_record(path) if path.exists() else None

    def save(self, record: RunRecord) -> Path:
        """Writes the record under its task, reward and hash, replacing an earlier one (--force).
        A compressed store writes the compact form: no indentation, and the per-example statistics'
        floats to `PUBLISHED_DIGITS` significant digits (the models compute in float32, whose
        precision that is), which takes about 40% off a tagging record."""
        path = self.record_path(record.task, record.reward, record.hash)
        payload = record.to_json()
        if path.suffix == ".gz":
            payload["test_examples"] = round_floats(payload.get("test_examples"), PUBLISHED_DIGITS)
            # no timestamp: the same record, the same bytes
            data = gzip.compress(json.dumps(payload, separators=(",", ":"), default=str).encode(), mtime=0)
        else:
            data = json.dumps(payload, indent=1, sort_keys=False, default=str).encode()
        atomic_write(path, lambda fh: fh.write(data))
        return path

    def save_checkpoint(self, run_hash: str, state_dict: dict[str, torch.Tensor]) -> Path:
        from safetensors.torch import save

        path = self.checkpoint_path(run_hash)
        # Tied weights share storage; safetensors wants each tensor once and contiguous.
        blob = save({k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()})
        atomic_write(path, lambda fh: fh.write(blob))
        return path

    def load_checkpoint(self, run_hash: str) -> dict[str, torch.Tensor] | None:
        from safetensors.torch import load_file

        path = self.checkpoint_path(run_hash)
        return load_file(str(path)) if path.exists() else None

    def find(self, run_hash: str) -> RunRecord:
        """The record of a run named by its hash alone (`harness evaluate`)."""
        paths = [*(self.root / "records").glob(f"*/*/{run_hash}.json"),
                 *(self.root / "records").glob(f"*/*/{run_hash}.json.gz")]
        if not paths:
            raise StoreError(f"no run {run_hash!r} in store {self.root}; `harness report` lists the stored runs "
                             "with their hashes (runs.csv), or pass --store")
        return self._read_record(paths[0])

    def evaluation_path(self, record: RunRecord, data_id: str) -> Path:
        return self.root / "evaluations" / record.task / record.reward / f"{record.hash}-{data_id}.json"

    def save_evaluation(self, record: RunRecord, data_id: str, evaluation: dict[str, Any]) -> Path:
        """Stores an evaluation of a run on other data (`harness evaluate`), beside, never inside, its record."""
        path = self.evaluation_path(record, data_id)
        data = json.dumps({"schema_version": SCHEMA_VERSION, **evaluation}, indent=1, default=str).encode()
        atomic_write(path, lambda fh: fh.write(data))
        return path

    def evaluations(self) -> list[dict[str, Any]]:
        """Every stored evaluation (see `save_evaluation`)."""
        return [self._read(path) for path in sorted((self.root / "evaluations").glob("*/*/*.json"))]

    def save_session(self, session: dict[str, Any]) -> Path:
        """Writes one `harness run` invocation's summary (atomically, like a record)."""
        stamp = session["started"].replace(":", "").replace("-", "")
        path = self.root / "sessions" / f"{stamp}-{os.getpid()}.json"
        data = json.dumps({"schema_version": SCHEMA_VERSION, **session}, indent=1, default=str).encode()
        atomic_write(path, lambda fh: fh.write(data))
        return path

    def sessions(self) -> list[dict[str, Any]]:
        """Every stored session summary, oldest first."""
        return [self._read(path) for path in sorted((self.root / "sessions").glob("*.json"))]

    def records(self, strict: bool = True) -> Iterator[RunRecord]:
        """Every stored record. A file that is not a readable record of this schema (corrupt, foreign,
        another schema version) is refused with a message naming it, or, not `strict`, skipped with a
        warning on stderr naming it."""
        records = self.root / "records"
        for path in sorted([*records.glob("*/*/*.json"), *records.glob("*/*/*.json.gz")]):
            try:
                yield self._read_record(path)
            except StoreError as err:
                if strict:
                    raise
                print(f"warning: skipped {err}", file=sys.stderr)

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
            raw = path.read_bytes()
            record = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
        except (OSError, ValueError, EOFError) as err:
            raise StoreError(f"{path}: not a readable JSON file ({err}); delete it and rerun the grid, "
                             "which recreates a run's record (a session summary is only a log)") from None
        if not isinstance(record, dict):
            raise StoreError(f"{path}: not a JSON object; delete it and rerun the grid")
        version = record.get("schema_version")
        if version is None:
            raise StoreError(f"{path}: not a record of this harness (no schema_version key); delete it or move it "
                             "out of the store (a run's record is recreated by rerunning the grid)")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path}: record schema version {version!r}, this harness reads version "
                             f"{SCHEMA_VERSION}; use the harness version that wrote it or rerun into a new "
                             "--store")
        return record
