"""The results store: one JSON record per run, written atomically, plus optional checkpoints.

Layout under the store directory:
  records/<task>/<reward>/<run hash>.json   the run's record (status completed, failed or refused)
  checkpoints/<run hash>/model.safetensors  selected weights of runs other strategies start from
  sessions/<UTC time>-<pid>.json            one per `harness run`: wall time, GPU utilisation
A record is written to a temporary file in the same folder, flushed to disk and renamed over the
final name, so a killed run never leaves a file that looks like a record; readers ignore the
temporary files. Rename is atomic on POSIX, so concurrent writers never interleave.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch

SCHEMA_VERSION = 1


class StoreError(RuntimeError):
    pass


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
        path = self.record_path(task, reward, run_hash)
        return self._read(path).get("status") if path.exists() else None

    def save(self, record: dict[str, Any]) -> Path:
        record = {"schema_version": SCHEMA_VERSION, **record}
        path = self.record_path(record["config"]["task"], record["config"]["reward"], record["hash"])
        data = json.dumps(record, indent=1, sort_keys=False, default=str).encode()
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

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record; a record of another schema version is refused with a message."""
        for path in sorted((self.root / "records").glob("*/*/*.json")):
            yield self._read(path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: not a readable JSON file ({err}); delete it and rerun the grid, "
                             "which recreates a run's record (a session summary is only a log)") from None
        version = record.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{path}: record schema version {version!r}, this harness reads version "
                             f"{SCHEMA_VERSION}; use the harness version that wrote it or rerun into a new "
                             "--store")
        return record
