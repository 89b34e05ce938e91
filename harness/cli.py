"""Command line: `python -m harness list | run | evaluate | bench | report | leaderboard | compress`."""
from __future__ import annotations

import argparse
import functools
import logging
import re
import shlex
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from harness.config import ConfigError, list_presets, load_grid, preset_path
from harness.store import default_store

log = logging.getLogger("harness")

# Imports torch, transformers or pandas happen inside the commands that need them, so `--help` and
# `list` start in well under a second (tests/test_fast_start.py).


def _names(values: list[str] | None) -> list[str] | None:
    """Accepts repeated options and comma-separated lists alike."""
    return [v for value in values for v in value.split(",") if v] if values else None


def _include(args: argparse.Namespace) -> list[str]:
    """Imports the --include paths (harness.include); their resolved paths."""
    from harness import include

    return include.load(args.include or [])


def cmd_list(args: argparse.Namespace) -> None:
    import json

    from harness import catalog

    _include(args)
    info = catalog.build() if catalog.registries_loaded() else catalog.load()
    info["presets"] = [catalog.preset_summary(name) for name in list_presets()]
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return
    print("tasks:")
    for t in info["tasks"]:
        print(f"  {t['name']:<14} {t['kind']:<15} metric {t['main_metric']:<8} model {t['default_model']:<14} "
              f"hub {t['hub_id']}  — {t['description']}\n  {'':<14} sampling reward: {t['sampling_reward']}")
    print("\nreward strategies:")
    for r in info["rewards"]:
        params = ", ".join(f"{p['name']}={p['default']!r}" for p in r["params"]) or "no parameters"
        print(f"  {r['name']:<19} [{r['family']}] {params}\n  {'':<19} {r['summary']}")
    print("\nmodels (aliases; any Hub id or local path works too):")
    for m in info["models"]:
        print(f"  {m['name']:<15} {m['description']}")
    print("\nreport formats (`harness report --format`; * also `harness leaderboard --format`):")
    for f in info["formats"]:
        print(f"  {f['name'] + ' *' * f['printable']:<14} {f['description']}")
    print("\npresets (grids shipped with the harness):")
    for g in info["presets"]:
        print(f"  {g['name']:<8} tasks {', '.join(g['tasks'])}; rewards {', '.join(g['rewards'])}; seeds {g['seeds']}")


def _choose_grid(args: argparse.Namespace) -> Path:
    if args.grid:
        return Path(args.grid)
    if args.preset:
        return preset_path(args.preset)
    import torch

    if torch.cuda.is_available() and args.device != "cpu":
        return preset_path("default")
    if args.grid_mode:
        log.warning("No GPU here: running the `quick` preset (sentiment, 7 strategies, 3 seeds: under 30 minutes "
                    "on two cores). Every task and strategy on a CPU: `--preset cpu` (about 12 h); the full "
                    "benchmark, on a GPU: `--preset default`.")
        return preset_path("quick")
    log.warning("No GPU here: this run takes the `smoke` preset's settings (small data slices, CPU); "
                "`--preset cpu` or `--preset default` takes a benchmark's, `--grid-file FILE` your own.")
    return preset_path("smoke")


def _device(value: str) -> str:
    """`--device`: cpu, cuda or cuda:N (checked against the machine when the run starts)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise argparse.ArgumentTypeError(f"{value!r}: expected cpu, cuda or cuda:N")
    return value


def cmd_run(args: argparse.Namespace) -> None:
    from harness.grid.monitor import failure_summary, summary_line
    from harness.grid.plan import make_plan
    from harness.grid.progress import print_plan, waiting_on_parent
    from harness.grid.scheduler import run_session
    from harness.overrides import compact_yaml, resolved_config, split_reward_options
    from harness.run.data import DataSource, default_data_dir
    from harness.store import Store
    from harness.trackers import log_record, open_trackers, upload_grid_report

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    if args.executor != "ray" and (args.address or args.gpus_per_run is not None):
        raise ConfigError("--address and --gpus-per-run need --executor ray")
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise ConfigError(f"--gpus-per-run must be 0 or more, got {args.gpus_per_run}")
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available() or int(args.device.partition(":")[2] or 0) >= torch.cuda.device_count():
            raise ConfigError(f"--device {args.device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if args.executor == "ray":
        from harness.grid.ray_executor import import_ray

        import_ray()  # missing Ray fails here, before anything is read or written
    if not args.grid_mode and not (args.task and args.reward):
        raise ConfigError("a single run needs --task and --reward (or use --grid for the whole grid)")
    trackers = open_trackers(_names(args.report_to), Path(args.store))
    includes = _include(args)
    grid = load_grid(_choose_grid(args), args.set or ())
    overrides = {k: v for k, v in {"model": args.model, "epochs": args.epochs, "lr": args.lr,
                                   "batch_size": args.batch_size, "max_train": args.max_train,
                                   "max_eval": args.max_eval}.items() if v is not None}
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    source = DataSource(data_dir=data_dir, hub_variant=args.hub_variant)
    log.info("grid %s (%s); data: %s; store: %s", grid.name, grid.source, data_dir or "Hugging Face Hub", args.store)
    store = Store(args.store, keep_checkpoints=args.keep_checkpoints)
    plan = make_plan(grid, source, store, _names(args.task), split_reward_options(args.reward), args.seed, overrides,
                     single=not args.grid_mode, force=args.force, retry_failed=args.retry_failed)
    config = resolved_config(grid.name, [(cell.strategy, cell.config) for cell in plan.cells])
    if args.dry_run:
        print(compact_yaml(config))
        print_plan(plan, store, args.jobs, waiting_on_parent(plan))
        return
    if plan.done:
        states = ", ".join(f"{n} {s}" for s, n in Counter(cell.stored for cell in plan.done).items())
        log.info("%d of %d cells already stored (%s), skipped; --force reruns them, --retry-failed the failed",
                 len(plan.done), len(plan.cells), states)
    if not plan.todo:
        return
    log.info("resolved configuration:\n%s", compact_yaml(config).rstrip())
    session = run_session(plan, store, source, command="python -m harness " + shlex.join(sys.argv[1:]),
                          executor=args.executor, jobs=args.jobs, progress=not args.quiet, address=args.address,
                          gpus_per_run=args.gpus_per_run, includes=list(dict.fromkeys([*includes, *grid.includes])),
                          device=args.device, config=config,
                          on_record=[functools.partial(log_record, trackers, group=grid.name)] if trackers else [])
    log.info("%s: %s", grid.name, summary_line(session, session["runs"]))
    upload_grid_report(trackers, store, grid.name)
    if session["failures"]:
        sys.exit(failure_summary(session["failures"]))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from harness.run.data import DataSource, default_data_dir
    from harness.run.evaluation import evaluate_run
    from harness.store import Store

    _include(args)
    if not args.test_files and not args.split:
        raise ConfigError("evaluate needs --test-files FILE... (the task's test format) or --split NAME")
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    source = DataSource(data_dir=data_dir, hub_variant=args.hub_variant)
    path, evaluation = evaluate_run(Store(args.store), args.run, source, [Path(f) for f in args.test_files or []],
                                    args.split, progress=not args.quiet)
    metric = evaluation["main_metric"]
    print(f"run {args.run} ({evaluation['task']} {evaluation['reward']} seed {evaluation['seed']}): {metric} "
          f"{evaluation['test'][metric]:.2f} on {evaluation['n_examples']} examples; stored {path}")


def cmd_bench(args: argparse.Namespace) -> None:
    from harness.run import bench
    from harness.run.data import default_data_dir

    _include(args)
    overrides = {k: v for k, v in {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                                   "lr": args.lr, "max_train": args.max_train, "max_eval": args.max_eval,
                                   "compile": args.compile or None, "precision": args.precision}.items()
                 if v is not None}
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    seeds = tuple(int(s) for s in _names(args.seeds) or ["1"])
    bench.main(args.task, overrides, data_dir, args.peak_tflops, args.repeats, Path(args.json) if args.json else None,
               seeds, args.preset, tuple(_names(args.systems) or ()))


def cmd_report(args: argparse.Namespace) -> None:
    from harness.report.filters import parse_filters
    from harness.report.writers import write_report
    from harness.store import Store
    from harness.trackers import log_report, open_trackers

    _include(args)
    chosen = parse_filters(args.filter or [])
    trackers = open_trackers(_names(args.report_to), Path(args.store))
    store = Store(args.store)
    formats = [name for names in args.format for name in names] if args.format else None
    write_report(store, Path(args.out), n_resamples=args.resamples, formats=formats,
                 records=chosen.select(store, strict=args.strict) if args.filter else None,
                 allow_mixed=args.allow_mixed, strict=args.strict)
    if trackers:
        log_report(trackers, Path(args.out), chosen.grid or "report")


def cmd_compress(args: argparse.Namespace) -> None:
    from harness.store import Store

    store = Store(args.store)
    rewritten = store.compress()
    size = sum(p.stat().st_size for p in (store.root / "records").rglob("*.json.gz"))
    print(f"{store.root}: {rewritten} record(s) compressed; records now {size / 2 ** 20:.1f} MiB "
          "(checkpoints, if any, are not part of them)")


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from harness.report.writers import print_leaderboards
    from harness.store import Store

    _include(args)
    print_leaderboards(Store(args.store), _names(args.task), args.format, n_resamples=args.resamples,
                       allow_mixed=args.allow_mixed, strict=args.strict)


def _report_formats(value: str) -> list[str]:
    """`report --format`: registered formats, comma-separated (aliases such as `latex` resolved)."""
    from harness.report import ReportError
    from harness.report.writers import resolve

    try:
        return resolve(_names([value]) or [])
    except ReportError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _printable_format(value: str) -> str:
    """`leaderboard --format`: a format that can be printed (aliases resolved)."""
    from harness.report.writers import canonical, formats

    name = canonical(value)
    if name not in formats(printable=True):
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from "
                                         f"{', '.join(map(repr, formats(printable=True)))})")
    return name


def _format_names(printable: bool = False) -> list[str]:
    """Report formats for the help text: the registry's if it is loaded (writers registered by
    the caller count), else the catalogue's (without importing pandas and torch)."""
    if "harness.report.writers" in sys.modules:
        from harness.report.writers import formats

        return formats(printable)
    from harness import catalog

    return [f["name"] for f in catalog.load()["formats"] if f["printable"] or not printable]


def _report_to_option(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--report-to", action="append", metavar="TRACKER",
                         help=f"{what} (tensorboard, wandb, mlflow, trackio; repeat or comma-separate; default "
                              "none; pip install 'reward-harness[track]')")
def _reading_options(command: argparse.ArgumentParser) -> None:
    """How `report` and `leaderboard` treat a store that is not uniform."""
    command.add_argument("--allow-mixed", action="store_true",
                         help="pool runs of a cell that differ in more than the seed (settings, data, model); "
                              "default: an error naming what differs")
    command.add_argument("--strict", action="store_true",
                         help="refuse a store holding a corrupt or foreign JSON file (default: skip it with a warning)")


def _include_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--include", action="append", metavar="PATH",
                         help="import this .py file or folder first, for the tasks and reward strategies it "
                              "registers (repeatable; a grid file may also list `include: [paths]`)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="tasks, reward strategies, models, report formats and presets")
    listing.add_argument("--json", action="store_true", help="the same information as JSON")
    _include_option(listing)
    listing.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="fine-tune one cell, or every cell of a grid")
    run.add_argument("--grid", dest="grid_mode", action="store_true", help="run every task x reward x seed")
    run.add_argument("--grid-file", dest="grid", help="a grid YAML file (default: the preset)")
    run.add_argument("--preset", help=f"a shipped grid: {', '.join(list_presets())} "
                                      "(default: `default` on a GPU, `smoke` otherwise)")
    run.add_argument("--task", action="append", help="only these tasks (repeat or comma-separate)")
    run.add_argument("--reward", action="append",
                     help="only these reward strategies (cells); NAME:param=value,... adds the strategy with "
                          "those parameters (a list value, gamma=[0.5,1], sweeps it)")
    run.add_argument("--seed", action="append", type=int, help="only these seeds (repeat for several)")
    run.add_argument("--model", help="model alias, Hub id or local path for every task")
    run.add_argument("--epochs", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--max-train", type=int, help="use the first N training rows")
    run.add_argument("--max-eval", type=int, help="use the first N validation and test rows")
    run.add_argument("--data-dir", help="local data folder (default $HARNESS_DATA_DIR; unset: the Hub)")
    run.add_argument("--hub-variant", help="an alternative Hub data set of the task (e.g. wmt16, xsum)")
    run.add_argument("--set", action="append", metavar="KEY=VALUE",
                     help="override a grid setting: train.patience=3, train.per_task.translation.batch_size=16, "
                          "rewards.focal.gamma=1.0, seeds=[1,2] (values are YAML; repeatable)")
    run.add_argument("--device", type=_device, help="cpu, cuda or cuda:N (default: cuda where there is one)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the resolved configuration and the cells (done, to run, waiting on a parent) "
                          "with estimated times; run nothing")
    _report_to_option(run, "log each run (config, training terms, validation, test) to these trackers")
    run.add_argument("--store", default=str(default_store()), help="results store (default $HARNESS_STORE or runs/)")
    run.add_argument("--force", action="store_true", help="rerun cells that already have a record")
    run.add_argument("--retry-failed", action="store_true", help="rerun cells recorded as failed")
    run.add_argument("--quiet", action="store_true", help="no progress bars (bars are only drawn on a terminal)")
    run.add_argument("--keep-checkpoints", action="store_true",
                     help="store every run's selected weights (for `harness evaluate`; the record gives the size)")
    run.add_argument("--jobs", type=int, help="runs at once, each in a worker process (default: as many as "
                                              "the free GPU memory holds; 1 on CPU)")
    run.add_argument("--executor", choices=("local", "ray"), default="local",
                     help="local: this machine, --jobs worker processes (default); ray: each run a Ray task "
                          "(pip install '.[ray]')")
    run.add_argument("--address", help="Ray cluster to use (`auto`, `ray://host:10001`; default: a local Ray "
                                       "instance)")
    run.add_argument("--gpus-per-run", type=float, help="GPUs each Ray task asks for, fractional to share a GPU "
                                                        "(default: 1 on a cluster with GPUs, else 0)")
    _include_option(run)
    run.set_defaults(func=cmd_run)

    evaluate = sub.add_parser("evaluate", help="score a stored run's kept checkpoint on other test data "
                                               "(no retraining; needs `run --keep-checkpoints`)")
    evaluate.add_argument("run", metavar="RUN_HASH", help="the run's hash (its record's file name)")
    evaluate.add_argument("--test-files", nargs="+", metavar="FILE",
                          help="test data in the task's local format (translation: the source file, then the target)")
    evaluate.add_argument("--split", help="or a split of the task's data source: train, validation, test")
    evaluate.add_argument("--data-dir", help="for --split: local data folder (default $HARNESS_DATA_DIR; unset: the Hub)")
    evaluate.add_argument("--hub-variant", help="for --split: an alternative data set of the task (e.g. wmt16)")
    evaluate.add_argument("--store", default=str(default_store()))
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    _include_option(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser("bench", help="the harness against the Hugging Face Trainer recipe, same data and model")
    bench.add_argument("--task", required=True)
    bench.add_argument("--model", help="model alias, Hub id or local path (default: the task's)")
    for name, convert in (("--max-train", int), ("--max-eval", int), ("--epochs", int), ("--batch-size", int),
                       ("--lr", float)):
        bench.add_argument(name, type=convert, help="default: the preset's setting for the task")
    bench.add_argument("--preset", default="default",
                       help="the shipped grid whose settings for the task are the budget (default: default; "
                            "cpu: the 2-core reference benchmark's)")
    bench.add_argument("--compile", action="store_true", help="torch.compile the harness's training forward")
    bench.add_argument("--precision", choices=("bf16", "fp32"),
                       help="the harness's autocast (default: bf16 on a GPU, fp32 on a CPU)")
    bench.add_argument("--seeds", action="append",
                       help="seeds, comma-separated or repeated (default 1): quality as mean and SD over them")
    bench.add_argument("--systems", action="append",
                       help="only these systems, comma-separated: harness, trainer, trainer_grouped, "
                            "trainer_grouped_bf16 (default: all; e.g. --systems harness --precision bf16 "
                            "to measure the harness's bf16 against Trainer figures already taken)")
    bench.add_argument("--data-dir", help="local data folder (default $HARNESS_DATA_DIR; unset: the Hub)")
    bench.add_argument("--peak-tflops", type=float,
                       help="the device's peak, for the fraction of it reached (default 989: H100 bf16 dense)")
    bench.add_argument("--repeats", type=int, default=1,
                       help="measure the pair N times in alternating order and report medians (default 1)")
    bench.add_argument("--json", help="also write the figures, command, date, device and versions here, once "
                                      "every measurement is in; finished ones are kept in FILE.partial.jsonl "
                                      "meanwhile, so a stopped bench rerun with the same settings resumes")
    _include_option(bench)
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser("report", help="tables and leaderboards from the stored results")
    report.add_argument("--store", default=str(default_store()))
    report.add_argument("--out", default="results")
    report.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    report.add_argument("--format", action="append", type=_report_formats, metavar="FORMAT",
                        help=f"write only these formats (repeat or comma-separate): {', '.join(_format_names())} "
                             "(default: all; `harness list` says what each writes)")
    report.add_argument("--filter", action="append", metavar="KEY=VALUES",
                        help="only some runs: task=ner, strategy=ce,focal, grid=NAME, since=2026-11-01 "
                             "(repeatable; all must hold)")
    _report_to_option(report, "upload the report folder as an artifact to these trackers (those that keep "
                              "artifacts: wandb, mlflow)")
    _reading_options(report)
    _include_option(report)
    report.set_defaults(func=cmd_report)

    board = sub.add_parser("leaderboard", help="print the overall and per-task leaderboards (writes no files)")
    board.add_argument("--store", default=str(default_store()))
    board.add_argument("--task", action="append", help="only these tasks (repeat or comma-separate)")
    board.add_argument("--format", type=_printable_format, default="md", metavar="{" + ",".join(_format_names(True)) + "}",
                       help="what to print (default md; latex is tex)")
    board.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    _reading_options(board)
    _include_option(board)
    board.set_defaults(func=cmd_leaderboard)

    compress = sub.add_parser("compress", help="rewrite a store's records gzip-compressed, and new ones so "
                                               "(a store to publish; `report` and `run` read it as it is)")
    compress.add_argument("--store", default=str(default_store()))
    compress.set_defaults(func=cmd_compress)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):  # the harness's own messages, to stderr
        log.addHandler(_StderrHandler())
        log.setLevel(logging.INFO)
        log.propagate = False  # once, whatever handlers the root logger has
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _stop_like_ctrl_c) if main_thread else None
    try:
        args.func(args)
    except KeyboardInterrupt as err:  # a grid's says how far it got (harness.grid.scheduler.Interrupted)
        print(f"\ninterrupted; {err or 'rerun the same command to resume'}", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if isinstance(err, _user_errors()):  # each names the file, line or key: no traceback
            sys.exit(f"error: {err}")
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _stop_like_ctrl_c(signum: int, frame: Any) -> None:
    """SIGTERM (`kill`, a scheduler ending a job) stops a command as Ctrl-C does: the run in progress
    is not stored, the grid's session summary is (marked interrupted), and the exit status is 130."""
    raise KeyboardInterrupt


class _StderrHandler(logging.StreamHandler):
    """Messages to whatever `sys.stderr` is when they are logged (tests and tools replace it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors that are the user's to fix; imported only once one is raised (tasks.formats
    imports every task and its metric libraries)."""
    from harness.report import ReportError
    from harness.store import StoreError
    from tasks.formats import DataFormatError

    return ConfigError, StoreError, DataFormatError, ReportError
