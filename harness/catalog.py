"""What `harness list` shows, without importing torch: the built-in tasks, reward strategies (with
their parameters and docstrings), model aliases and report formats, kept in `catalog.json`.

Reading the registries means importing every strategy, and with them torch (about two seconds);
`list` and `--help` should answer at once, so they read this file instead. It is generated from the
registries (`python -m harness.catalog` rewrites it) and `tests/test_fast_start.py` fails, naming
that command, when it no longer matches them. Where the registries are loaded already (`--include`
imported code, or a program registered a strategy or a report writer before calling
`harness.cli.main`), `list` reads them instead, so what was registered is shown too.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

PATH = Path(__file__).parent / "catalog.json"


def _doc(obj: Any) -> str:
    return " ".join((obj or "").split())


def build() -> dict[str, Any]:
    """The catalogue from the live registries (imports them, and torch)."""
    import rewards  # noqa: F401  (registers the built-in strategies)
    import tasks  # noqa: F401  (registers the built-in tasks)
    from harness.report.writers import WRITERS
    from harness.run.models import ALIASES
    from rewards.base import REWARDS
    from tasks.base import TASKS

    return {
        "tasks": [{"name": t.name, "kind": t.kind, "main_metric": t.main_metric, "default_model": t.default_model,
                   "hub_id": t.hub_id, "description": t.description,
                   "sampling_reward": _doc(t.sentence_score.__doc__) or "(undocumented)"} for t in TASKS.values()],
        "rewards": [{"name": name, "family": cls.family, "init_from": cls.init_from,
                     "summary": (cls.__doc__ or "").strip().splitlines()[0],
                     "params": [{"name": f.name, "default": f.default, "help": f.metadata.get("help", ""),
                                 "min": f.metadata.get("min"), "max": f.metadata.get("max"),
                                 "choices": list(f.metadata["choices"]) if f.metadata.get("choices") else None}
                                for f in dataclasses.fields(cls)]}
                    for name, cls in REWARDS.items()],
        "models": [{"name": alias, "description": what} for alias, what in ALIASES.items()],
        "formats": [{"name": name, "description": w.description, "printable": w.render is not None}
                    for name, w in WRITERS.items()],
    }


def preset_summary(name: str) -> dict[str, Any]:
    """A preset's name, tasks, reward cells and seeds, read without checking it (the presets are
    tested) and without the registries."""
    from harness.config import preset_path, read_grid_file
    from harness.overrides import expand_sweep

    raw = read_grid_file(preset_path(name))
    rewards = raw.get("rewards") or []
    cells = [c for r in rewards for c in (expand_sweep(r, rewards[r] or {}) if isinstance(rewards, dict) else [r])]
    return {"name": name, "tasks": raw.get("tasks", []), "rewards": cells, "seeds": raw.get("seeds", [1])}


def registries_loaded() -> bool:
    """Whether the live registries are imported (and torch with them): then they are the truth."""
    return any(module in sys.modules for module in ("rewards.base", "tasks.base", "harness.report.writers"))


def load() -> dict[str, Any]:
    """The stored catalogue (no torch)."""
    return json.loads(PATH.read_text(encoding="utf-8"))


def write() -> None:
    PATH.write_text(json.dumps(build(), indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote {PATH}")
