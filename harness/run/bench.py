"""`python -m harness bench`: the harness against the standard Hugging Face `Trainer` recipe.

Both systems run in one process, on one device, on the same tokenised rows (the first
`max_train` training and `max_eval` test rows of the cached splits), the same model and initial
weights, epochs, batch size, learning rate, warm-up steps, weight decay and gradient clipping:

  Trainer  TrainingArguments with bf16 on CUDA (fp32 on CPU), the task kind's standard collator
           (DataCollatorForTokenClassification / DataCollatorWithPadding / DataCollatorForSeq2Seq),
           the default optimiser (fused AdamW; with `new_lr_scale`, which it cannot express, the
           harness's AdamW with the same parameter groups) and linear schedule, no evaluation or saving during
           training, nothing sent anywhere (report_to="none"), in the configurations a user would
           pick (`trainer_configs`): its default random batches; `train_sampling_strategy=
           "group_by_length"` (batches of similar length, one flag); and that with bf16 autocast
           on a CPU with native bf16 instructions. The best of them is the one to beat.
  harness  `harness.run.recipe.run` with the `ce` strategy into a temporary store: validation after
           every epoch, selection of the best epoch and the checkpoint that other strategies start
           from are part of its wall time, as in every grid run; its training time excludes them.

The test metric of each is the harness's own: `runner.evaluate` (same batching, same generation
settings) scored by the task's scorer, so the comparison is about training alone. The harness runs
first, so warm-up costs (CUDA libraries, kernel selection) fall on it, not on the Trainer. Each
seed (`--seeds`) trains every system from the same initial weights; quality is compared by the
mean and the spread over seeds. With `--repeats N` the systems run N times per seed in rotated
order and every figure is the median over the repeats (all are kept in the JSON): on a shared
machine the load of other processes changes between measurements, so each records the load average.

A comparison on the `cpu` preset's summarisation rows takes hours, longer than a session lives. With
`--json FILE`, each finished measurement is appended at once to `FILE.partial.jsonl` with what it
was measured under (task, settings, model, data checksums, device, threads, library versions) and
the commit and time it ran at; a rerun with the same settings takes those measurements from there
and runs only the rest. FILE is written (atomically) only when every measurement is in, and the
journal is then removed, so a stopped bench never leaves a result that looks complete.

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
from harness.environment import cpu_has_bf16, environment, package_version
from harness.run.data import DataSource
from harness.run.recipe import Setup, adamw, prepare, run, test
from harness.store import Store, atomic_write
from rewards.base import BASELINE
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


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """One way a user would configure the Trainer."""

    name: str
    sampling: str  # TrainingArguments.train_sampling_strategy: "random" (its default) or "group_by_length"
    bf16: bool


def trainer_configs(device: torch.device) -> list[TrainerConfig]:
    """The Trainer's default and its faster configurations: length grouping, and bf16 where the
    device computes it natively (always on CUDA; on a CPU with avx512_bf16 or AMX)."""
    cuda = device.type == "cuda"
    configs = [TrainerConfig("trainer", "random", cuda), TrainerConfig("trainer_grouped", "group_by_length", cuda)]
    if not cuda and cpu_has_bf16():
        configs.append(TrainerConfig("trainer_grouped_bf16", "group_by_length", True))
    return configs


def run_trainer(cfg: RunConfig, source: DataSource, device: torch.device, config: TrainerConfig) -> dict[str, Any]:
    """The Trainer in `config` on the run's training rows and initial model (`prepare`, so the same
    seed, weights and data as the harness), then the harness's test evaluation of its model."""
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
            bf16=config.bf16, use_cpu=device.type == "cpu", seed=cfg.seed, data_seed=cfg.seed,
            train_sampling_strategy=config.sampling,
            eval_strategy="no", save_strategy="no", logging_steps=s.log_every, report_to="none",
            disable_tqdm=True)
        # The Trainer has no per-group learning rate: with `new_lr_scale` it gets the harness's AdamW
        # (the same groups, fused, as its own default); its scheduler is still its own.
        optimizer = adamw(model, s) if s.new_lr_scale is not None else None
        trainer = Trainer(model=model, args=args, train_dataset=setup.kind.trainer_rows(train_rows),
                          data_collator=setup.kind.trainer_collator(setup.tokenizer, model),
                          processing_class=setup.tokenizer, optimizers=(optimizer, None))
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


def journal_path(json_path: Path) -> Path:
    """Where a bench writing `json_path` keeps the measurements it has finished."""
    return json_path.with_name(json_path.name + ".partial.jsonl")


def read_journal(path: Path | None, identity: dict[str, Any]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """The journal entries `path` holds, by (system, seed, repeat). A line measured under another
    identity is an error naming it (mixing them would compare unlike things); a last line cut short
    by a kill mid-write is dropped, as that measurement never finished."""
    if path is None or not path.exists():
        return {}
    text = path.read_text()
    lines = text.splitlines()
    done: dict[tuple[str, int, int], dict[str, Any]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):  # cut short by a kill mid-write
                lines.pop()
                break
            raise ConfigError(f"{path}, line {number}: not a JSON measurement; delete that line (it is measured "
                              "again) or the file (everything is)") from None
        if entry["identity"] != identity:
            changed = ", ".join(_differences(entry["identity"], identity))
            raise ConfigError(f"{path}, line {number}: measured with another {changed} than this bench's; rerun "
                              f"with what it records, or delete {path} to measure from scratch")
        done[(entry["system"], entry["seed"], entry["repeat"])] = entry
    if text and not text.endswith("\n"):  # so the next measurement starts a line of its own
        path.write_text("".join(line + "\n" for line in lines))
    return done


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields where two nested records differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [name for key in sorted(a.keys() | b.keys())
                for name in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def journal_entry(key: tuple[str, int, int], figures: dict[str, Any], identity: dict[str, Any],
                  commit: str | None) -> dict[str, Any]:
    """One finished measurement with what it was measured under; `commit`: the code's at the bench's start."""
    system, seed, repeat = key
    return {"system": system, "seed": seed, "repeat": repeat, "figures": figures, "identity": identity,
            "git_commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def append_journal(path: Path, entry: dict[str, Any]) -> None:
    """`entry` on disk before the next measurement starts."""
    with path.open("a") as journal:
        journal.write(json.dumps(entry) + "\n")
        journal.flush()
        os.fsync(journal.fileno())


def median_figures(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over repeated measurements (None where it is None, e.g. GPU memory on CPU)."""
    return {key: None if measurements[0][key] is None else statistics.median(m[key] for m in measurements)
            for key in measurements[0]}


def bench(task_name: str, overrides: dict[str, Any], source: DataSource, seeds: tuple[int, ...] = (1,),
          peak_tflops: float = H100_BF16_DENSE_TFLOPS, repeats: int = 1, preset: str = "default",
          systems: tuple[str, ...] = (), journal: Path | None = None) -> dict[str, Any]:
    """Runs the harness and each Trainer configuration on the same slice for every seed, at the
    `preset`'s settings for the task (then `overrides`); returns their figures (means over seeds of
    the per-seed medians), the floor and the ratios. `systems` keeps only the named ones ("harness"
    and `trainer_configs` names; empty: all), e.g. to measure a second harness setting against
    Trainer figures already taken. `journal`: where finished measurements are kept and resumed from;
    `provenance` says when and at which commit each measurement used ran."""
    if package_version("accelerate") is None:  # the Trainer needs it; fail before minutes of harness training
        raise ConfigError("harness bench compares against the Hugging Face Trainer, which needs accelerate: "
                          "pip install -e '.[bench]' (scripts/setup.sh installs it)")
    task = get_task(task_name)
    base = load_grid(preset_path(preset)).settings[task.name]  # the recipe's per-task settings
    settings: TrainSettings = settings_from("bench", overrides, base)
    cfgs = [RunConfig(task=task.name, reward=BASELINE, seed=seed, settings=settings, data=source.describe(task))
            for seed in seeds]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainers = trainer_configs(device)
    known = ["harness", *(t.name for t in trainers)]
    unknown = sorted(set(systems) - set(known))
    if unknown:
        raise ConfigError(f"unknown system(s) {', '.join(unknown)} for bench on {device.type}; "
                          f"choose from {', '.join(known)}")
    trainers = [t for t in trainers if not systems or t.name in systems]
    model_name = settings.model or task.default_model
    setup = prepare(cfgs[0], None, source, device)
    floor = training_floor(setup)
    train_rows, test_rows = len(setup.tables["train"]), len(setup.tables["test"])
    del setup
    systems_run: dict[str, Callable[[RunConfig], dict[str, Any]]] = {
        "harness": lambda cfg: run_harness(cfg, source, device),
        **{t.name: (lambda cfg, t=t: run_trainer(cfg, source, device, t)) for t in trainers}}
    names = [name for name in systems_run if not systems or name in systems]
    env = environment()
    device_name = env["device"] if device.type == "cuda" else f"{_cpu_name()} ({os.cpu_count()} logical CPUs)"
    identity = json.loads(json.dumps(
        {"task": task.name, "preset": preset, "model": model_name, "settings": dataclasses.asdict(settings),
         "data": cfgs[0].data, "device_name": device_name, "threads": torch.get_num_threads(),
         **{k: env[k] for k in ("torch", "transformers")}, "accelerate": package_version("accelerate")}))
    done = read_journal(journal, identity)
    if done:
        print(f"bench: {len(done)} measurement(s) taken from {journal}; the others run now")
    measurements: dict[str, dict[int, list[dict[str, Any]]]] = {name: {} for name in names}
    used: list[tuple[str, int, int]] = []
    for cfg in cfgs:
        for repeat in range(repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:  # rotated order
                key = (name, cfg.seed, repeat)
                if key not in done:
                    done[key] = journal_entry(key, systems_run[name](cfg), identity, env["git_commit"])
                    _release(device)
                    if journal is not None:
                        append_journal(journal, done[key])
                used.append(key)
                measurements[name].setdefault(cfg.seed, []).append(done[key]["figures"])
    figures = {name: over_seeds([median_figures(runs) for runs in by_seed.values()])
               for name, by_seed in measurements.items()}
    for system in figures.values():
        epochs = system["train_samples"] / train_rows
        system["train_samples_per_second"] = system["train_samples"] / system["train_seconds"]
        system["flops_per_second"] = floor.flops_per_epoch * epochs / system["train_seconds"]
        system["fraction_of_peak"] = system["flops_per_second"] / (peak_tflops * 1e12)
    ratios = ({t.name: ratios_to(figures["harness"], figures[t.name]) for t in trainers}
              if "harness" in figures else {})
    best = max((t.name for t in trainers), key=lambda n: figures[n]["train_samples_per_second"], default=None)
    return {"task": task.name, "preset": preset, "model": model_name, "device": device.type, "device_name": device_name,
            "seeds": list(seeds), "settings": dataclasses.asdict(settings), "train_rows": train_rows,
            "test_rows": test_rows, "main_metric": task.main_metric,
            "trainer_configs": [dataclasses.asdict(t) for t in trainers], "best_trainer": best,
            "cpu_bf16": env["cpu_bf16"], "threads": torch.get_num_threads(),
            "floor": {**dataclasses.asdict(floor), "tokens": floor.tokens, "flops_per_epoch": floor.flops_per_epoch,
                      "peak_tflops": peak_tflops,
                      "seconds_per_epoch_at_peak": floor.flops_per_epoch / (peak_tflops * 1e12)},
            "repeats": repeats, "systems": figures, "ratio_harness_to": ratios,
            "ratio_harness_to_trainer": ratios.get("trainer"), "ratio_harness_to_best_trainer": ratios.get(best),
            "measurements": measurements,
            "provenance": [{k: done[key][k] for k in ("system", "seed", "repeat", "git_commit", "date")}
                           for key in used],
            "journal_unused": len(done) - len(used),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {k: env[k] for k in ("harness", "git_commit", "python", "torch", "transformers", "datasets")}
                        | {"accelerate": package_version("accelerate"), "platform": platform.platform()}}


def over_seeds(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's mean over seeds, with the test metric's sample standard deviation over seeds
    (`test_metric_sd`, None with one seed) and the per-seed test metrics."""
    figures = {key: None if per_seed[0][key] is None else statistics.fmean(f[key] for f in per_seed)
               for key in per_seed[0]}
    scores = [f["test_metric"] for f in per_seed]
    return {**figures, "test_metric_sd": statistics.stdev(scores) if len(scores) > 1 else None,
            "test_metric_per_seed": scores}


def ratios_to(harness: dict[str, Any], trainer: dict[str, Any]) -> dict[str, Any]:
    """Harness ÷ Trainer for every figure (speed: above 1 is faster for rates, slower for seconds),
    and the quality gap (harness − Trainer test metric) beside the larger of their seed SDs."""
    ratio = {key: _ratio(harness[key], trainer[key]) for key in harness
             if key not in ("load_average", "test_metric_sd", "test_metric_per_seed")}
    spreads = [sd for sd in (harness["test_metric_sd"], trainer["test_metric_sd"]) if sd is not None]
    return {**ratio, "wall_speedup": _ratio(trainer["wall_seconds"], harness["wall_seconds"]),
            "quality_gap": harness["test_metric"] - trainer["test_metric"],
            "seed_sd": max(spreads) if spreads else None}


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
    """The comparison as a plain-text table: one row per system (means over seeds), then the
    harness's ratio to each Trainer configuration (rates: above 1 is faster; wall speed-up: the
    Trainer's wall time over the harness's) with the quality gap beside the seed SD."""
    mib = 2 ** 20
    columns = [("train samples/s", "train_samples_per_second", 1), ("train s", "train_seconds", 1),
               ("wall s", "wall_seconds", 1), ("peak GPU MiB", "peak_gpu_memory_bytes", mib),
               (f"test {result['main_metric']}", "test_metric", 1), ("seed SD", "test_metric_sd", 1),
               ("TFLOP/s", "flops_per_second", 1e12), ("% of peak", "fraction_of_peak", 0.01),
               ("load avg", "load_average", 1)]

    def cells(figures: dict[str, Any]) -> list[Any]:
        return [None if figures.get(key) is None else figures[key] / unit for _, key, unit in columns]

    labels = {t["name"]: f"Trainer ({t['sampling']}{', bf16' if t['bf16'] else ''})" for t in result["trainer_configs"]}
    rows = [[label, *cells(result["systems"][name])] for name, label in labels.items()]
    if "harness" in result["systems"]:
        rows.append(["harness", *cells(result["systems"]["harness"])])
    ratio_rows = [[f"harness ÷ {label}{' (best)' if name == result['best_trainer'] else ''}",
                   r["train_samples_per_second"], r["wall_speedup"], r["quality_gap"], r["seed_sd"]]
                  for name, label in labels.items() if name in result["ratio_harness_to"]
                  for r in [result["ratio_harness_to"][name]]]
    floor = result["floor"]
    head_lines = (f"{result['task']} · {result['model']} · {result['train_rows']} training rows × "
                  f"{result['settings']['epochs']} epoch(s), batch {result['settings']['batch_size']}, "
                  f"{result['test_rows']} test rows · seeds {result['seeds']} · {result['device_name']}, "
                  f"{result['threads']} threads\n"
                  f"floor: {floor['flops_per_epoch']:.3e} FLOPs per epoch (6·N·T; {floor['tokens']} tokens) = "
                  f"{floor['seconds_per_epoch_at_peak']:.2e} s at "
                  f"{floor['peak_tflops']:g} TFLOP/s")
    return (head_lines + "\n" + tabulate(rows, headers=["", *(name for name, _, _ in columns)], floatfmt=".4g",
                                         missingval="—")
            + "\n\n" + tabulate(ratio_rows, headers=["", "samples/s ratio", "wall speed-up",
                                                      f"Δ test {result['main_metric']}", "seed SD"],
                                 floatfmt=".3g", missingval="—"))


def command_line(task: str, overrides: dict[str, Any], data_dir: Path | None, peak_tflops: float,
                 repeats: int, seeds: tuple[int, ...], preset: str = "default", systems: tuple[str, ...] = ()) -> str:
    """The command that reproduces a result, with every setting spelled out."""
    words = ["python", "-m", "harness", "bench", "--task", task, "--preset", preset]
    for key, value in overrides.items():
        words += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    if data_dir is not None:
        words += ["--data-dir", str(data_dir)]
    return shlex.join(words + ["--peak-tflops", f"{peak_tflops:g}", "--repeats", str(repeats),
                               "--seeds", ",".join(map(str, seeds))]
                      + (["--systems", ",".join(systems)] if systems else []))


def main(task: str, overrides: dict[str, Any], data_dir: Path | None, peak_tflops: float | None, repeats: int,
         json_path: Path | None, seeds: tuple[int, ...] = (1,), preset: str = "default",
         systems: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `bench` command: runs, prints the table, optionally writes the figures as JSON."""
    peak_tflops = peak_tflops or H100_BF16_DENSE_TFLOPS
    result = {"command": command_line(task, overrides, data_dir, peak_tflops, repeats, seeds, preset, systems),
              **bench(task, overrides, DataSource(data_dir=data_dir), seeds=seeds, peak_tflops=peak_tflops,
                      repeats=repeats, preset=preset, systems=systems,
                      journal=journal_path(json_path) if json_path is not None else None)}
    print(table(result))
    if json_path is not None:
        finish(result, json_path)
    return result


def finish(result: dict[str, Any], json_path: Path) -> None:
    """Writes the result atomically, then removes its journal, unless it holds measurements this
    bench did not use (other seeds or repeats), which stay for the bench that will."""
    journal = journal_path(json_path)
    atomic_write(json_path, lambda fh: fh.write(json.dumps(result, indent=1).encode()))
    if result["journal_unused"]:
        print(f"bench: {journal} kept: it holds {result['journal_unused']} measurement(s) this bench did not use")
    else:
        journal.unlink(missing_ok=True)
