"""The reproducibility manifest of a report, and the grid file that reruns its runs.

Everything in it comes from the records themselves (their configs, data checksums, metric
signatures, environments) plus the code and libraries that produced the report, so a published
table can be traced to what made it.
"""
from __future__ import annotations

import datetime
import json
from collections import Counter, defaultdict
from typing import Any, Sequence

from harness import __version__
from harness.environment import git, package_version
from harness.store import RunRecord

REPORT_LIBRARIES = ("torch", "transformers", "datasets", "sacrebleu", "rouge-score", "seqeval", "numpy",
                    "scipy", "pandas", "matplotlib", "tabulate")
_ENVIRONMENT_LIBRARIES = ("harness", "python", "torch", "transformers", "datasets")


def _distinct(values: list[Any]) -> list[Any]:
    """Distinct JSON-able values in first-seen order."""
    seen: dict[str, Any] = {}
    for value in values:
        seen.setdefault(json.dumps(value, sort_keys=True, default=str), value)
    return list(seen.values())


def grid(records: list[RunRecord]) -> dict[str, Any]:
    """A grid file (the format `python -m harness run --grid --grid-file` reads) covering the runs:
    their tasks, rewards with parameters, seeds and each task's most common settings."""
    by_task: dict[str, Counter] = defaultdict(Counter)
    rewards: dict[str, dict[str, Any]] = {}
    for r in records:
        by_task[r.task][json.dumps(r.config["settings"], sort_keys=True)] += 1
        rewards.setdefault(r.reward, r.reward_params)
    per_task = {task: {k: v for k, v in json.loads(counts.most_common(1)[0][0]).items() if v is not None}
                for task, counts in sorted(by_task.items())}
    return {"name": "report", "description": "the grid of the runs behind this report (rebuilt from their records)",
            "tasks": sorted(by_task), "rewards": rewards,
            "seeds": sorted({r.seed for r in records}), "train": {"per_task": per_task}}


SESSION_FIELDS = ("started", "command", "executor", "jobs", "includes", "runs", "statuses", "wall_seconds", "gpu_samples",
                  "gpu_utilization_mean", "gpu_busy_share_80", "gpu_memory_peak_mib")


def manifest(records: list[RunRecord], command: str, statistics: dict[str, Any],
             sessions: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Code version, library versions, data checksums, metric signatures, hardware, grid and command;
    and the `harness run` sessions that filled the store (wall time, GPU utilisation)."""
    completed = [r for r in records if r.status == "completed"]
    environments = [r.environment for r in completed]
    by_task: dict[str, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task].append(r)
    return {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "rerun": "python -m harness run --grid --grid-file grid.yaml  (grid.yaml is written next to this file)",
        "code": {"harness_version": __version__, "git_commit": git("rev-parse", "HEAD"),
                 "git_dirty": bool(git("status", "--porcelain")),
                 "runs_git_commits": sorted({str(e.get("git_commit")) for e in environments}),
                 "runs_harness_versions": sorted({r.config["harness_version"] for r in records})},
        "libraries": {"report": {p: package_version(p) for p in REPORT_LIBRARIES},
                      "runs": _distinct([{k: e.get(k) for k in _ENVIRONMENT_LIBRARIES} for e in environments])},
        "hardware": _distinct([{"device": e.get("device"), "platform": e.get("platform")} for e in environments]),
        "data": {task: _distinct([r.config["data"] for r in runs]) for task, runs in sorted(by_task.items())},
        "metric_signatures": {task: _distinct([r.metric_info for r in runs if r.status == "completed"])
                              for task, runs in sorted(by_task.items())},
        "models": {task: _distinct([r.model for r in runs if r.status == "completed"])
                   for task, runs in sorted(by_task.items())},
        "generation": {task: _distinct([r.generation for r in runs if r.status == "completed"])
                       for task, runs in sorted(by_task.items())},
        "grid": grid(records),
        "statistics": statistics,
        "records": dict(Counter(r.status for r in records)),
        "sessions": [{k: session.get(k) for k in SESSION_FIELDS} | {"device": session.get("environment", {}).get("device")}
                     for session in sessions],
    }
