"""Shared test helpers: tiny grids over slices of the real data."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.config import RunConfig, expand, load_grid
from harness.data import DataSource
from tasks.base import get_task


def write_grid(path: Path, tasks: list[str], rewards: Any = ("ce",), seeds: tuple[int, ...] = (1,),
               **train: Any) -> Path:
    """A grid of tiny random models on the first rows of the real data."""
    settings = {"model": "tiny-bert", "epochs": 2, "batch_size": 8, "eval_batch_size": 16, "lr": 1e-3,
                "max_train": 32, "max_eval": 16, "log_every": 2, **train}
    per_task = {t: {"model": "tiny-bert2bert", "max_new_tokens": 8} for t in tasks
                if get_task(t).kind == "seq2seq"}
    grid = {"name": "tiny", "tasks": tasks, "rewards": list(rewards) if not isinstance(rewards, dict) else rewards,
            "seeds": list(seeds), "train": {**settings, "per_task": per_task}}
    path.write_text(yaml.safe_dump(grid))
    return path


def configs(grid_path: Path, data_dir: Path) -> tuple[list[RunConfig], DataSource]:
    grid = load_grid(grid_path)
    source = DataSource(data_dir=data_dir)
    return expand(grid, {t: source.describe(get_task(t)) for t in grid.tasks}), source
