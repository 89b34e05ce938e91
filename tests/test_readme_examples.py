"""README's "Adding a task" and "Adding a strategy" examples work as printed: each code block is
written into a folder outside the package and loaded with --include, then run."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.cli import main
from rewards.base import REWARDS
from tasks.base import TASKS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(heading: str) -> str:
    """The first ```python block under `heading`."""
    section = README.split(f"## {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_examples_stay_short():
    assert len(block("Adding a task").splitlines()) < 30 and len(block("Adding a strategy").splitlines()) < 30


@pytest.fixture
def registered():
    """The example's task and strategy leave the registries with the test (later tests list them all)."""
    yield
    REWARDS.pop("margin", None)
    TASKS.pop("rte", None)


def test_readme_task_and_strategy_run_from_an_outside_folder(tmp_path, registered):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "rte.py").write_text(block("Adding a task"))
    (folder / "margin.py").write_text(block("Adding a strategy"))
    data = tmp_path / "data" / "rte"
    data.mkdir(parents=True)
    lines = [f"a man plays {w}\ta person plays {w if i % 2 else 'chess'}\t{i % 2}"
             for i, w in enumerate(["guitar", "football", "piano", "cards"] * 4)]
    for split in ("train", "validation", "test"):
        (data / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"name": "readme", "tasks": ["rte"], "rewards": ["ce", "margin"], "seeds": [1],
                                "train": {"model": "tiny-bert", "epochs": 1, "batch_size": 8, "log_every": 1}}))
    store = tmp_path / "store"
    main(["run", "--grid", "--grid-file", str(grid), "--include", str(folder), "--data-dir", str(tmp_path / "data"),
          "--store", str(store), "--quiet"])
    records = [json.loads(p.read_text()) for p in (store / "records").rglob("*.json")]
    assert {r["config"]["reward"]: r["status"] for r in records} == {"ce": "completed", "margin": "completed"}
    margin = next(r for r in records if r["config"]["reward"] == "margin")
    assert margin["steps"] and "hinge" in margin["steps"][0] and len(margin["test_examples"]) == 16
