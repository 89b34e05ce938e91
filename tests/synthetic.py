"""Synthetic but schema-valid run records for report tests: made-up predictions scored by the real
task scorers, so every per-example statistic is what a real run would store. No model is trained."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from harness.config import RunConfig, TrainSettings
from harness.store import RunRecord, Store
from tasks import metrics
from tasks.base import get_task

N_EXAMPLES = 80
_WORDS = "a man woman dog child in the red blue shirt is walking running on street park with ball".split()
_ENTITY_TAGS = ("PER", "LOC", "ORG")


def references(task: str) -> list[Any]:
    """A fixed test set per task."""
    rng = random.Random(task)
    if task == "sentiment":
        return [rng.randint(0, 1) for _ in range(N_EXAMPLES)]
    if task == "ner":
        rows = []
        for _ in range(N_EXAMPLES):
            tags = ["O"] * rng.randint(5, 9)
            for start in rng.sample(range(0, len(tags) - 1, 2), 2):
                kind = rng.choice(_ENTITY_TAGS)
                tags[start], tags[start + 1] = f"B-{kind}", rng.choice([f"I-{kind}", "O"])
            rows.append(tags)
        return rows
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 12))) for _ in range(N_EXAMPLES)]


# The share of examples whose outcome a seed draws afresh: most errors are shared by every seed of a
# strategy, as a real model's are, so seeds differ by a few points, not by the whole error rate.
SEED_NOISE = 0.1


def predictions(task: str, error: float, seed: int) -> list[Any]:
    """The references with a share `error` of the examples damaged (a wrong label, a wrong entity
    tag, a word replaced, repeated or the output left empty): mostly the same examples for every
    seed, a share `SEED_NOISE` of them drawn per seed."""
    shared, rng = random.Random(f"{task}-{error}"), random.Random(f"{task}-{error}-{seed}")
    out = []
    for ref in references(task):
        outcome = shared.random()
        if rng.random() < SEED_NOISE:
            outcome = rng.random()
        if outcome >= error:
            out.append(ref)
        elif task == "sentiment":
            out.append(1 - ref)
        elif task == "ner":
            out.append(["O" if t != "O" else t for t in ref])
        else:
            words = ref.split()
            choice = rng.random()
            if choice < 0.1:
                out.append("")
            elif choice < 0.4:
                out.append(" ".join(words[:2] * 3))
            else:
                out.append(" ".join(rng.choice(_WORDS) if rng.random() < 0.5 else w for w in words))
    return out


def calibration(task: str, preds: list[Any], refs: list[Any], confidence: float, seed: int) -> list[dict[str, Any]]:
    """Per-example calibration statistics (tasks.metrics.calibration_stats) of made-up probabilities:
    each scored prediction (a label, a word's tag) gets about `confidence` on the predicted class and
    the rest spread evenly over the other classes."""
    labels = list(get_task(task).labels)
    rng = random.Random(f"{task}-{confidence}-{seed}-calibration")
    rows = []
    for pred, ref in zip(preds, refs):
        predicted, gold = ([labels.index(t) for t in pred], [labels.index(t) for t in ref]) if task == "ner" \
            else ([int(pred)], [int(ref)])
        probs = []
        for p in predicted:
            c = min(0.999, max(1 / len(labels) + 0.01, confidence + rng.uniform(-0.05, 0.05)))
            row = [(1 - c) / (len(labels) - 1)] * len(labels)
            row[p] = c
            probs.append(row)
        rows.append(metrics.calibration_stats(probs, gold))
    return rows


def config(task: str, reward: str, seed: int, reward_params: dict[str, Any] | None = None) -> RunConfig:
    settings = TrainSettings(epochs=3, max_eval=N_EXAMPLES)
    data = {"kind": "local", "md5": {"test": [f"md5-of-{task}-test"]}}
    return RunConfig(task=task, reward=reward, seed=seed, settings=settings, reward_params=reward_params or {},
                     data=data)


CALIBRATED = ("ner", "sentiment")  # the synthetic tasks whose runs store calibration (classification, tagging)


def completed(task: str, reward: str, seed: int, error: float, *, seconds: float = 100.0,
              sampling: bool = False, init_from: str | None = None,
              reward_params: dict[str, Any] | None = None, confidence: float | None = 0.9) -> RunRecord:
    """A completed record whose test predictions have the given error rate; on ner and sentiment with
    calibration statistics whose predictions carry about `confidence` (None: none, as records
    written before calibration was stored)."""
    cfg = config(task, reward, seed, reward_params)
    t = get_task(task)
    refs, preds = references(task), predictions(task, error, seed)
    result = t.score(preds, refs)
    if confidence is not None and task in CALIBRATED:
        per_example = [{**s, **c} for s, c in zip(result.per_example, calibration(task, preds, refs, confidence, seed))]
        result = type(result)(corpus={**result.corpus, **metrics.calibration_aggregate(per_example)},
                              per_example=per_example, info=result.info)
    main = result.corpus[t.main_metric]
    terms = {"loss": 1.0, "ce": 1.0, **({"kl": 0.05 * seed, "entropy": 0.5, "reward": 0.3} if sampling else {})}
    history = [{"epoch": e, "train": terms, "validation": {**result.corpus, t.main_metric: main * e / 3},
                "train_seconds": seconds / 4, "samples_per_second": 50.0} for e in (1, 2, 3)]
    steps = [{"step": s, "epoch": 1 + s // 20, "lr": 1e-4, **terms, **({"reward": 0.2 + s / 100} if sampling else {})}
             for s in range(10, 70, 10)]
    return RunRecord.completed(
        cfg, model=t.default_model, generation={"num_beams": 1} if t.kind == "seq2seq" else {},
        init_from=init_from, main_metric=t.main_metric, best_epoch=3, validation=result.corpus,
        test=result.corpus, metric_info=result.info, history=history, steps=steps,
        test_examples=[{"prediction": p, "reference": r, **s} for p, r, s in zip(preds, refs, result.per_example)],
        timing={"total_seconds": seconds, "train_seconds": 0.8 * seconds, "test_eval_seconds": 5.0,
                "train_samples_per_second": 50.0 if not sampling else 20.0, "peak_gpu_memory_bytes": 2 ** 30},
        environment={"harness": "0.1.0", "git_commit": "abc123", "python": "3.11.7", "torch": "2.13.0",
                     "transformers": "5.0", "datasets": "5.0", "platform": "Linux", "device": "NVIDIA H100"})


def not_completed(task: str, reward: str, seed: int, status: str) -> RunRecord:
    cfg = config(task, reward, seed)
    if status == "refused":
        return RunRecord.refused(cfg, f"reward {reward!r} does not support {task}")
    return RunRecord.failed(cfg, "RuntimeError: CUDA error: out of memory",
                            "Traceback ...\nRuntimeError: out of memory")


def grid_records() -> list[RunRecord]:
    """ner, sentiment and translation with: ce (3 seeds, overconfident on ner and sentiment); reinforce,
    clearly better (3 seeds, from the ce checkpoint); constant_reward, as good as ce (2 seeds: a
    warning); label_smoothing, with exactly ce's predictions (a tie) but better calibrated; focal,
    one of 3 seeds failed; dice refused on translation; mrt failed on every seed of sentiment."""
    records = []
    for task in ("ner", "sentiment", "translation"):
        ce = [completed(task, "ce", s, 0.35, confidence=0.95) for s in (1, 2, 3)]
        records += ce
        records += [completed(task, "reinforce", s, 0.05, seconds=150.0, sampling=True, init_from=ce[s - 1].hash)
                    for s in (1, 2, 3)]
        records += [completed(task, "constant_reward", s, 0.35, seconds=150.0, sampling=True,
                              init_from=ce[s - 1].hash) for s in (1, 2)]
        records += [completed(task, "label_smoothing", s, 0.35, confidence=0.7) for s in (1, 2, 3)]
        records += [completed(task, "focal", s, 0.3) for s in (1, 3)] + [not_completed(task, "focal", 2, "failed")]
    records += [not_completed("translation", "dice", s, "refused") for s in (1, 2, 3)]
    records += [completed(t, "dice", s, 0.3) for t in ("ner", "sentiment") for s in (1, 2, 3)]
    records += [not_completed("sentiment", "mrt", s, "failed") for s in (1, 2, 3)]
    return records


def write_store(root: Path, records: list[RunRecord] | None = None) -> Store:
    store = Store(root)
    for record in grid_records() if records is None else records:
        store.save(record)
    return store
