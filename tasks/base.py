"""The declarative task description and its registry.

A task is data (where its files live, how its rows look, which metric scores it) plus the few
functions that differ between tasks. Everything that differs only by *kind* of model (tagging,
classification, sequence-to-sequence) lives in `kinds`, so a new task is usually one small
`register_task(Task(...))` call, in the spirit of lm-evaluation-harness task configs.

Canonical rows, whatever the source (local files or the Hub):
  tagging:        {"tokens": list[str], "tags": list[str]}        (IOB2 tag strings)
  classification: {"text": str, "label": int}
  seq2seq:        {"source": str, "target": str}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Generation:
    """Decoding settings; recorded with every result because they change the scores."""

    num_beams: int = 1
    max_new_tokens: int = 64
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


@dataclass(frozen=True)
class MetricResult:
    """Corpus-level scores plus per-example sufficient statistics.

    `per_example[i]` holds what is needed to recompute the corpus scores on any resample of the
    examples (entity counts, BLEU n-gram counts, ...), so significance tests can bootstrap them.
    `info` carries strings such as the sacreBLEU signature.
    """

    corpus: dict[str, float]
    per_example: list[dict[str, Any]]
    info: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    name: str
    kind: str  # a registered model kind (`kinds.KINDS`): the task's data form
    description: str
    # Local files, relative to the data directory, per split. Seq2seq parallel data names two files.
    local_files: dict[str, tuple[str, ...]]
    # Reads the local file(s) of one split into canonical rows; raises formats.DataFormatError.
    read_local: Callable[..., list[dict[str, Any]]]
    hub_id: str
    hub_config: str | None
    hub_splits: dict[str, str]
    # Maps one Hub row (a dict) to a canonical row; `features` is the Hub split's features.
    from_hub: Callable[[dict[str, Any], Any], dict[str, Any]]
    # Scores predictions against references (both in canonical form: tag lists, label ids or strings).
    score: Callable[[list[Any], list[Any]], MetricResult]
    # Recomputes corpus scores from a subset of per-example statistics (for the bootstrap).
    aggregate: Callable[[list[dict[str, Any]]], dict[str, float]]
    # A sentence-level score in [0, 1] of one prediction against its reference (for RL rewards).
    sentence_score: Callable[[Any, Any], float]
    main_metric: str
    default_model: str
    labels: tuple[str, ...] = ()
    generation: Generation | None = None
    max_source_length: int = 128
    max_target_length: int = 64
    # Decoder-only models read a seq2seq task as prompt → completion: this template around the
    # source text ("{source}"), the target being the completion.
    prompt: str | None = None
    # Alternative Hub configurations (e.g. WMT16 for translation): name -> (hub_id, hub_config).
    hub_alternatives: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def local_paths(self, data_dir: Path, split: str) -> tuple[Path, ...]:
        return tuple(Path(data_dir) / rel for rel in self.local_files[split])


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    import tasks  # noqa: F401  (registers the built-in tasks)

    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
