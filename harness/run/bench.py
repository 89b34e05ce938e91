"""`python -m harness bench`: the harness against the standard Hugging Face `Trainer` recipe.

Both systems run in one process, on one device, on the same tokenised rows (the first
`max_train` training and `max_eval` test rows of the cached splits), the same model and initial
weights, epochs, batch size, learning rate, warm-up steps, weight decay and gradient clipping:

  Trainer  TrainingArguments with bf16 on CUDA (fp32 on CPU), the task kind's standard collator
           (DataCollatorForTokenClassification / DataCollatorWithPadding / DataCollatorForSeq2Seq),
           the default optimiser (AdamW) and linear schedule, random batches, no evaluation or
           saving during training, nothing sent anywhere (report_to="none").
  harness  `harness.run.recipe.run` with the `ce` strategy into a temporary store: validation after
           every epoch, selection of the best epoch and the checkpoint that other strategies start
           from are part of its wall time, as in every grid run; its training time excludes them.

The test metric of each is the harness's own: `runner.evaluate` (same batching, same generation
settings) scored by the task's scorer, so the comparison is about training alone. The harness runs
first, so warm-up costs (CUDA libraries, kernel selection) fall on it, not on the Trainer. With
`--repeats N` the pair runs N times in alternating order (harness first, then Trainer first, ...)
and every figure is the median over the repeats (all are kept in the JSON): on a shared machine
the load of other processes changes between measurements, so each records the load average.

The floor: FLOPs per epoch by the standard estimate 6 · N · T (2 per weight and token forward, 4
backward), N the parameters that multiply every token (linear layers, a tied output projection
included; embedding look-ups are free), T the non-padding tokens of the training slice. An
encoder-decoder counts encoder parameters × source tokens + decoder parameters × target tokens;
this charges the decoder's cross-attention key/value projections, which in fact run over the
source tokens, at the target length. Attention's own score and mixing products (≈ 4·d·T² per
layer) are left out, as in the standard estimate; they are small at these sequence lengths.
"""
from __future__ import annotations

import dataclasses
import datetime
import gc
import json
import os
import platform
import shlex
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tabulate import tabulate

from harness.config import ConfigError, RunConfig, TrainSettings, load_grid, preset_path, settings_from
from harness.environment import environment, package_version
from harness.run.data import DataSource
from harness.run.recipe import Setup, prepare, run, test
from harness.store import Store
from tasks.base import get_task

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet: bf16 Tensor Core, dense (no sparsity)


@dataclasses.dataclass(frozen=True)
class Floor:
    """What one epoch over the training slice must compute, by the 6 · N · T estimate."""

    work: tuple[tuple[int, int], ...]  # (matmul parameters, tokens they multiply): the kind's `work`

    @property
    def tokens(self) -> int:
        return sum(tokens for _, tokens in self.work)

    @property
    def flops_per_epoch(self) -> int:
        return 6 * sum(parameters * tokens for parameters, tokens in self.work)


def training_floor(setup: Setup) -> Floor:
    """The floor of one epoch over the run's training rows."""
    return Floor(tuple(setup.kind.work(setup.model, setup.tables["train"])))


def run_trainer(cfg: RunConfig, source: DataSource, device: torch.device) -> dict[str, Any]:
    """The standard Trainer recipe on the run's training rows and initial model (`prepare`, so the
    same seed, weights and data as the harness), then the harness's test evaluation of its model."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    s = cfg.settings
    load, started = os.getloadavg()[0], time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    setup = prepare(cfg, None, source, device)
    model, train_rows = setup.model, setup.tables["train"]
    steps = -(-len(train_rows) // s.batch_size) * s.epochs
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr, weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
            lr_scheduler_type="linear", warmup_steps=int(s.warmup_ratio * steps),  # the harness's rounding
            bf16=device.type == "cuda", use_cpu=device.type == "cpu", seed=cfg.seed, data_seed=cfg.seed,
            eval_strategy="no", save_strategy="no", logging_steps=s.log_every, report_to="none",
            disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=setup.kind.trainer_rows(train_rows),
                          data_collator=setup.kind.trainer_collator(setup.tokenizer, model),
                          processing_class=setup.tokenizer)
        trainer.remove_callback(PrinterCallback)  # losses are still logged, just not printed over the table
        train_start = time.perf_counter()
        trainer.train()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - train_start
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    preds, refs, result, _ = test(setup, progress=False)
    return {"train_samples": len(train_rows) * s.epochs, "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - started, "peak_gpu_memory_bytes": peak,
            "test_metric": result.corpus[setup.task.main_metric], "load_average": load}


def _release(device: torch.device) -> None:
    """Frees what one system left behind, so the other starts from the same empty device."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_harness(cfg: RunConfig, source: DataSource, device: torch.device) -> dict[str, Any]:
    """`harness.run.recipe.run` into a temporary store, reduced to the figures the Trainer also has."""
    load, started = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        record = run(cfg, Store(tmp), source, device, progress=False)
    timing = record.timing
    return {"train_samples": round(timing["train_samples_per_second"] * timing["train_seconds"]),
            "train_seconds": timing["train_seconds"], "wall_seconds": time.perf_counter() - started,
            "peak_gpu_memory_bytes": timing["peak_gpu_memory_bytes"],
            "test_metric": record.score, "load_average": load}


def median_figures(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated measurements (None where it is None, e.g. GPU memory on CPU)."""
    return {key: None if measurements[0][key] is None else statistics.median(m[key] for m in measurements)
            for key in measurements[0]}


def bench(task_name: str, overrides: dict[str, Any], source: DataSource, seed: int = 1,
          peak_tflops: float = H100_BF16_DENSE_TFLOPS, repeats: int = 1) -> dict[str, Any]:
    """Runs both systems on the same slice; returns their figures, the floor and the ratios."""
    if package_version("accelerate") is None:  # the Trainer needs it; fail before minutes of harness training
        raise ConfigError("harness bench compares against the Hugging Face Trainer, which needs accelerate: "
                          "pip install -e '.[bench]' (scripts/setup.sh installs it)")
    task = get_task(task_name)
    base = load_grid(preset_path("default")).settings[task.name]  # the recipe's per-task settings
    settings: TrainSettings = settings_from("bench", overrides, base)
    cfg = RunConfig(task=task.name, reward="ce", seed=seed, settings=settings, data=source.describe(task))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model_name = settings.model or task.default_model
    setup = prepare(cfg, None, source, device)
    floor = training_floor(setup)
    train_rows, test_rows = len(setup.tables["train"]), len(setup.tables["test"])
    del setup
    measure: dict[str, Callable[[], dict[str, Any]]] = {
        "harness": lambda: run_harness(cfg, source, device),
        "trainer": lambda: run_trainer(cfg, source, device)}
    measurements: dict[str, list[dict[str, Any]]] = {"harness": [], "trainer": []}
    for repeat in range(repeats):
        for name in ("harness", "trainer") if repeat % 2 == 0 else ("trainer", "harness"):
            measurements[name].append(measure[name]())
            _release(device)
    systems = {name: median_figures(runs) for name, runs in measurements.items()}
    for figures in systems.values():
        epochs = figures["train_samples"] / train_rows
        figures["train_samples_per_second"] = figures["train_samples"] / figures["train_seconds"]
        figures["flops_per_second"] = floor.flops_per_epoch * epochs / figures["train_seconds"]
        figures["fraction_of_peak"] = figures["flops_per_second"] / (peak_tflops * 1e12)
    ratio = {key: _ratio(systems["harness"][key], systems["trainer"][key]) for key in systems["harness"]
             if key != "load_average"}
    env = environment()
    device_name = env["device"] if device.type == "cuda" else f"{_cpu_name()} ({os.cpu_count()} logical CPUs)"
    return {"task": task.name, "model": model_name, "device": device.type, "device_name": device_name,
            "seed": seed, "settings": dataclasses.asdict(settings), "train_rows": train_rows,
            "test_rows": test_rows, "main_metric": task.main_metric,
            "floor": {**dataclasses.asdict(floor), "tokens": floor.tokens, "flops_per_epoch": floor.flops_per_epoch,
                      "peak_tflops": peak_tflops,
                      "seconds_per_epoch_at_peak": floor.flops_per_epoch / (peak_tflops * 1e12)},
            "repeats": repeats, "systems": systems, "ratio_harness_to_trainer": ratio, "measurements": measurements,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {k: env[k] for k in ("harness", "git_commit", "python", "torch", "transformers", "datasets")}
                        | {"accelerate": package_version("accelerate"), "platform": platform.platform()}}


def _cpu_name() -> str:
    """The processor's model name (`platform.processor()` is empty on most Linux systems)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def table(result: dict[str, Any]) -> str:
    """The comparison as a plain-text table, one row per system and one of ratios."""
    mib = 2 ** 20
    columns = [("train samples/s", "train_samples_per_second", 1), ("train s", "train_seconds", 1),
               ("wall s", "wall_seconds", 1), ("peak GPU MiB", "peak_gpu_memory_bytes", mib),
               (f"test {result['main_metric']}", "test_metric", 1), ("TFLOP/s", "flops_per_second", 1e12),
               ("% of peak", "fraction_of_peak", 0.01), ("load avg", "load_average", 1)]

    def cells(figures: dict[str, Any], scale: bool) -> list[Any]:
        return [None if figures.get(key) is None else figures[key] / (unit if scale else 1) for _, key, unit in columns]

    rows = [["Trainer", *cells(result["systems"]["trainer"], True)],
            ["harness", *cells(result["systems"]["harness"], True)],
            ["ratio harness/Trainer", *cells(result["ratio_harness_to_trainer"], False)]]
    floor = result["floor"]
    head_lines = (f"{result['task']} · {result['model']} · {result['train_rows']} training rows × "
                  f"{result['settings']['epochs']} epoch(s), batch {result['settings']['batch_size']}, "
                  f"{result['test_rows']} test rows · {result['device_name']}\n"
                  f"floor: {floor['flops_per_epoch']:.3e} FLOPs per epoch (6·N·T; {floor['tokens']} tokens) = "
                  f"{floor['seconds_per_epoch_at_peak']:.2e} s at "
                  f"{floor['peak_tflops']:g} TFLOP/s")
    return head_lines + "\n" + tabulate(rows, headers=["", *(name for name, _, _ in columns)], floatfmt=".4g",
                                        missingval="None")


def command_line(task: str, overrides: dict[str, Any], data_dir: Path | None, peak_tflops: float,
                 repeats: int) -> str:
    """The command that reproduces a result, with every setting spelled out."""
    words = ["python", "-m", "harness", "bench", "--task", task]
    for key, value in overrides.items():
        words += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    return shlex.join(words + ["--peak-tflops", f"{peak_tflops:g}", "--repeats", str(repeats)])


def main(task: str, overrides: dict[str, Any], data_dir: Path | None, peak_tflops: float | None, repeats: int,
         json_path: Path | None) -> dict[str, Any]:
    """The `bench` command: runs, prints the table, optionally writes the figures as JSON."""
    peak_tflops = peak_tflops or H100_BF16_DENSE_TFLOPS
    result = {"command": command_line(task, overrides, data_dir, peak_tflops, repeats),
              **bench(task, overrides, DataSource(data_dir=data_dir), peak_tflops=peak_tflops, repeats=repeats)}
    print(table(result))
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1))
    return result
