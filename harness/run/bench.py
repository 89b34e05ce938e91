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

import datasets
import torch
from tabulate import tabulate

from harness.config import ConfigError, RunConfig, TrainSettings, load_grid, preset_path, settings_from
from harness.run.data import Batches, DataSource, head, load_split
from harness.environment import environment, package_version
from harness.run.models import load_model, load_tokenizer
from harness.run.recipe import evaluate, generation_settings, run, seed_everything
from harness.store import Store
from tasks.base import Task, get_task

H100_BF16_DENSE_TFLOPS = 989.0  # NVIDIA H100 SXM datasheet: bf16 Tensor Core, dense (no sparsity)


@dataclasses.dataclass(frozen=True)
class Floor:
    """What one epoch over the training slice must compute, by the 6 · N · T estimate."""

    source_tokens: int
    target_tokens: int  # decoder tokens; 0 for encoder-only models
    encoder_parameters: int  # all matmul parameters of an encoder-only model
    decoder_parameters: int

    @property
    def flops_per_epoch(self) -> int:
        return 6 * (self.encoder_parameters * self.source_tokens + self.decoder_parameters * self.target_tokens)


def matmul_parameters(module: torch.nn.Module) -> int:
    """Parameters that multiply every token: linear layers' weights and biases, a tied output
    projection included (it is its own Linear module); embedding tables are only looked up."""
    return sum(p.numel() for m in module.modules() if isinstance(m, torch.nn.Linear)
               for p in m.parameters(recurse=False))


def training_floor(model: torch.nn.Module, task: Task, rows: datasets.Dataset) -> Floor:
    """The floor of one epoch over `rows` (encoded rows: unpadded `input_ids` and `labels`)."""
    source = sum(len(ids) for ids in rows["input_ids"])
    if task.kind != "seq2seq":
        return Floor(source, 0, matmul_parameters(model), 0)
    encoder = matmul_parameters(model.get_encoder())
    target = sum(len(ids) for ids in rows["labels"])
    return Floor(source, target, encoder, matmul_parameters(model) - encoder)


def _trainer_collator(task: Task, tokenizer: Any, model: torch.nn.Module) -> Any:
    from transformers import DataCollatorForSeq2Seq, DataCollatorForTokenClassification, DataCollatorWithPadding

    if task.kind == "tagging":
        return DataCollatorForTokenClassification(tokenizer)
    if task.kind == "classification":
        return DataCollatorWithPadding(tokenizer)
    return DataCollatorForSeq2Seq(tokenizer, model=model)  # builds decoder_input_ids from the labels


def run_trainer(cfg: RunConfig, train_rows: datasets.Dataset, test_rows: datasets.Dataset,
                device: torch.device) -> dict[str, Any]:
    """The standard Trainer recipe on `train_rows`, then the harness's test evaluation of its model."""
    from transformers import PrinterCallback, Trainer, TrainingArguments

    s, task = cfg.settings, get_task(cfg.task)
    load, started = os.getloadavg()[0], time.perf_counter()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seed_everything(cfg.seed)  # the same initial weights (new heads included) as the harness run
    model_name = s.model or task.default_model
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, task, tokenizer)
    steps = -(-len(train_rows) // s.batch_size) * s.epochs
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as out:
        args = TrainingArguments(
            output_dir=out, num_train_epochs=s.epochs, per_device_train_batch_size=s.batch_size,
            learning_rate=s.lr, weight_decay=s.weight_decay, max_grad_norm=s.max_grad_norm,
            lr_scheduler_type="linear", warmup_steps=int(s.warmup_ratio * steps),  # the harness's rounding
            bf16=device.type == "cuda", use_cpu=device.type == "cpu", seed=cfg.seed, data_seed=cfg.seed,
            eval_strategy="no", save_strategy="no", logging_steps=s.log_every, report_to="none",
            disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train_rows.select_columns(["input_ids", "labels"]),
                          data_collator=_trainer_collator(task, tokenizer, model), processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)  # losses are still logged, just not printed over the table
        train_start = time.perf_counter()
        trainer.train()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - train_start
        peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    decoder_start = getattr(model.config, "decoder_start_token_id", None)
    test = Batches(task, test_rows, s.eval_batch_size, tokenizer.pad_token_id, decoder_start)
    preds, refs = evaluate(task, model, test, tokenizer, device, generation_settings(task, cfg), "test")
    metric = task.score(preds, refs).corpus[task.main_metric]
    return {"train_samples": len(train_rows) * s.epochs, "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - started, "peak_gpu_memory_bytes": peak, "test_metric": metric,
            "load_average": load}


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
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, task, tokenizer)
    decoder_start = getattr(model.config, "decoder_start_token_id", None)
    train_rows = head(load_split(task, "train", source, tokenizer, decoder_start), settings.max_train)
    test_rows = head(load_split(task, "test", source, tokenizer, decoder_start), settings.max_eval)
    floor = training_floor(model, task, train_rows)
    del model
    measure: dict[str, Callable[[], dict[str, Any]]] = {
        "harness": lambda: run_harness(cfg, source, device),
        "trainer": lambda: run_trainer(cfg, train_rows, test_rows, device)}
    measurements: dict[str, list[dict[str, Any]]] = {"harness": [], "trainer": []}
    for repeat in range(repeats):
        for name in ("harness", "trainer") if repeat % 2 == 0 else ("trainer", "harness"):
            measurements[name].append(measure[name]())
            _release(device)
    systems = {name: median_figures(runs) for name, runs in measurements.items()}
    for figures in systems.values():
        epochs = figures["train_samples"] / len(train_rows)
        figures["train_samples_per_second"] = figures["train_samples"] / figures["train_seconds"]
        figures["flops_per_second"] = floor.flops_per_epoch * epochs / figures["train_seconds"]
        figures["fraction_of_peak"] = figures["flops_per_second"] / (peak_tflops * 1e12)
    ratio = {key: _ratio(systems["harness"][key], systems["trainer"][key]) for key in systems["harness"]
             if key != "load_average"}
    env = environment()
    device_name = env["device"] if device.type == "cuda" else f"{_cpu_name()} ({os.cpu_count()} logical CPUs)"
    return {"task": task.name, "model": model_name, "device": device.type, "device_name": device_name,
            "seed": seed, "settings": dataclasses.asdict(settings), "train_rows": len(train_rows),
            "test_rows": len(test_rows), "main_metric": task.main_metric,
            "floor": {**dataclasses.asdict(floor), "flops_per_epoch": floor.flops_per_epoch,
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
                  f"floor: {floor['flops_per_epoch']:.3e} FLOPs per epoch (6·N·T; {floor['source_tokens']} source "
                  f"+ {floor['target_tokens']} target tokens) = {floor['seconds_per_epoch_at_peak']:.2e} s at "
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
