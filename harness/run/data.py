"""Data for a run: canonical rows from local files or the Hub, tokenised once and cached on disk.

Tokenised splits are `datasets` Arrow tables saved under the cache directory ($HARNESS_CACHE,
default ~/.cache/reward-harness) and keyed by the data's checksum, the tokenizer and the
encoding settings, so every run of a task on the same data reuses them; a cache entry is written
to a temporary folder and renamed, so concurrent runs never read half of one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import datasets
import torch

from harness.config import ConfigError
from harness.run.models import tokenizer_identity
from kinds import ModelKind
from tasks.base import SPLITS, Task
from tasks.formats import DATA_DIR_FIX, DataFormatError

ENCODING_VERSION = 1  # bump when a kind's `encode` changes what it produces
datasets.disable_progress_bars()


@dataclass(frozen=True)
class DataSource:
    """Local files under `data_dir`, or the Hub (optionally an alternative configuration).

    A Hub variant (`--hub-variant NAME`, one of the task's `hub_alternatives`) is read from local
    files when a data directory holds them, laid out as the task's own files under
    `<data_dir>/variants/<NAME>/` (e.g. `variants/wmt16/multi30k/train.de.gz`), and from the Hub
    otherwise. An unknown variant is refused (`KeyError` listing the valid ones) before anything runs.
    """

    data_dir: Path | None = None
    hub_variant: str | None = None

    def describe(self, task: Task) -> dict[str, Any]:
        """What identifies the data in a run's config: file checksums locally, the Hub id otherwise."""
        local = self.local_dir(task)
        if local is not None:
            described = {"kind": "local", "md5": {split: [file_md5(p) for p in task.local_paths(local, split)]
                                                  for split in SPLITS}}
            return {**described, "variant": self.hub_variant} if self.hub_variant else described
        hub_id, config = self.hub(task)
        return {"kind": "hub", "id": hub_id, "config": config}

    def local_dir(self, task: Task) -> Path | None:
        """The folder the task's local files are read from; None: the Hub."""
        self.hub(task)  # checks the variant
        if self.data_dir is None or self.hub_variant is None:
            return self.data_dir
        folder = self.data_dir / "variants" / self.hub_variant
        return folder if folder.is_dir() else None

    def hub(self, task: Task) -> tuple[str, str | None]:
        if self.hub_variant is None:
            return task.hub_id, task.hub_config
        if self.hub_variant not in task.hub_alternatives:
            raise KeyError(f"--hub-variant {self.hub_variant!r}: task {task.name!r} has no such variant; valid "
                           f"variants: {', '.join(sorted(task.hub_alternatives)) or 'none'}")
        return task.hub_alternatives[self.hub_variant]


def default_data_dir() -> Path | None:
    value = os.environ.get("HARNESS_DATA_DIR")
    return Path(value) if value else None


def cache_dir() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "reward-harness"))


_MD5S: dict[tuple[str, float, int], str] = {}


def file_md5(path: Path) -> str:
    """The file's MD5 (cached by path, modification time and size): what names local data in a config."""
    if not path.exists():
        raise DataFormatError(path, None, "the file does not exist", fix=DATA_DIR_FIX)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime, stat.st_size)
    if key not in _MD5S:
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _MD5S[key] = digest.hexdigest()
    return _MD5S[key]


def canonical_rows(task: Task, split: str, source: DataSource) -> list[dict[str, Any]]:
    """The split's rows in the task's canonical form (see `tasks.base`)."""
    local = source.local_dir(task)
    if local is not None:
        return task.read_local(*task.local_paths(local, split))
    hub_id, config = source.hub(task)
    table = datasets.load_dataset(hub_id, config, split=task.hub_splits[split])
    return [task.from_hub(row, table.features) for row in table]


def check_data(tasks: list[Task], source: DataSource) -> None:
    """Reads every split of every task: bad input (`DataFormatError`, naming the file, the line and
    the fix) stops a grid here, before any run trains, whichever executor would run it; so does a
    Hub data set that cannot be loaded."""
    for task in tasks:
        for split in SPLITS:
            try:
                canonical_rows(task, split, source)
            except DataFormatError:
                raise
            except Exception as err:  # noqa: BLE001 - the Hub or `datasets` failing, in any of its ways
                hub_id, config = source.hub(task)
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise ConfigError(f"task {task.name}: cannot load {hub_id}{f' ({config})' if config else ''} "
                                  f"split {split} from the Hub: {first}. Fix: reach the Hub, or give local files "
                                  f"(--data-dir; a variant's files go under <data dir>/variants/<variant>/)") from None


def load_split(task: Task, split: str, source: DataSource, tokenizer: Any, kind: ModelKind,
               start: int | None) -> datasets.Dataset:
    """Canonical columns plus `input_ids`, `labels`, the kind's own columns and `index`."""
    key = [task.name, split, source.describe(task), tokenizer_identity(tokenizer),
           task.max_source_length, task.max_target_length, start, ENCODING_VERSION]
    if kind.name != task.kind:  # another kind's encoding of the same rows (e.g. causal_lm); older keys unchanged
        key += [kind.name, task.prompt]
    key = json.dumps(key)
    folder = cache_dir() / "tokenized" / f"{task.name}-{split}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    if folder.exists():
        return datasets.load_from_disk(str(folder))
    table = encode_rows(task, canonical_rows(task, split, source), tokenizer, kind, start)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    table.save_to_disk(str(tmp))
    try:
        tmp.rename(folder)
    except OSError:  # another process cached the same split first
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder))


def encode_rows(task: Task, rows: list[dict[str, Any]], tokenizer: Any, kind: ModelKind,
                start: int | None) -> datasets.Dataset:
    """Canonical rows as a table with the kind's encoding and each row's `index`."""
    table = datasets.Dataset.from_list(rows)
    table = table.map(lambda batch: kind.encode(task, batch, tokenizer, start), batched=True)
    return table.add_column("index", list(range(len(table))))


def head(table: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    """The first `limit` rows (a fixed slice, the same for every seed), or all of them."""
    return table if limit is None or limit >= len(table) else table.select(range(limit))


class Batches:
    """Length-grouped batches of encoded rows, padded per batch.

    Training shuffles, then sorts by length inside windows of 50 batches and shuffles the batch
    order (the HF `group_by_length` recipe): little padding, still random. Evaluation sorts all rows
    by length; predictions are put back in order through the `index` column.
    """

    def __init__(self, kind: ModelKind, task: Task, table: datasets.Dataset, batch_size: int, pad_id: int,
                 start: int | None):
        data = table.select_columns(["input_ids", "labels", "index", *kind.columns]).to_dict()
        self.rows = [dict(zip(data, values)) for values in zip(*data.values())]
        self.lengths = [kind.length(r) for r in self.rows]
        self.kind, self.task, self.batch_size, self.pad_id, self.start = kind, task, batch_size, pad_id, start

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def order(self, generator: torch.Generator | None) -> list[list[int]]:
        size = self.batch_size
        if generator is None:
            ranked = sorted(range(len(self.rows)), key=lambda i: -self.lengths[i])
            return [ranked[i:i + size] for i in range(0, len(ranked), size)]
        perm = torch.randperm(len(self.rows), generator=generator).tolist()
        window = size * 50
        batches = []
        for start in range(0, len(perm), window):
            chunk = sorted(perm[start:start + window], key=lambda i: -self.lengths[i])
            batches += [chunk[i:i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def iterate(self, generator: torch.Generator | None = None) -> Iterator[dict[str, Any]]:
        for indices in self.order(generator):
            yield self.kind.collate(self.task, [self.rows[i] for i in indices], self.pad_id, self.start)
