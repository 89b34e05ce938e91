"""Command line: `python -m harness list | run | evaluate | bench | report | leaderboard`."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

import torch

from harness.config import ConfigError, list_presets, load_grid, preset_path
from harness.grid.monitor import failure_summary, summary_line
from harness.run.data import DataSource, default_data_dir
from harness.store import Store, StoreError, default_store


def _names(values: list[str] | None) -> list[str] | None:
    """Accepts repeated options and comma-separated lists alike."""
    return [v for value in values for v in value.split(",") if v] if values else None


def _include(args: argparse.Namespace) -> list[str]:
    """Imports the --include paths (harness.include); their resolved paths."""
    from harness import include

    return include.load(args.include or [])


def cmd_list(args: argparse.Namespace) -> None:
    from harness.report.writers import WRITERS
    from harness.run.models import ALIASES
    from rewards.base import REWARDS
    from tasks.base import TASKS, get_task

    _include(args)
    get_task("ner")  # registers the built-in tasks
    print("tasks:")
    for task in TASKS.values():
        reward = " ".join((task.sentence_score.__doc__ or "").split()) or "(undocumented)"
        print(f"  {task.name:<14} {task.kind:<15} metric {task.main_metric:<8} model {task.default_model:<14} "
              f"hub {task.hub_id}  — {task.description}\n  {'':<14} sampling reward: {reward}")
    print("\nreward strategies:")
    for name, cls in REWARDS.items():
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)) or "no parameters"
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<19} [{cls.family}] {params}\n  {'':<19} {doc}")
    print("\nmodels (aliases; any Hub id or local path works too):")
    for alias, what in ALIASES.items():
        print(f"  {alias:<15} {what}")
    print("\nreport formats (`harness report --format`; * also `harness leaderboard --format`):")
    for name, writer in WRITERS.items():
        print(f"  {name + ' *' * (writer.render is not None):<14} {writer.description}")
    print("\npresets (grids shipped with the harness):")
    for name in list_presets():
        grid = load_grid(preset_path(name))
        print(f"  {name:<8} tasks {', '.join(grid.tasks)}; rewards {', '.join(grid.rewards)}; seeds {list(grid.seeds)}")


def _choose_grid(args: argparse.Namespace) -> Path:
    if args.grid:
        return Path(args.grid)
    if args.preset:
        return preset_path(args.preset)
    if torch.cuda.is_available():
        return preset_path("default")
    print("No GPU here: running the `smoke` preset (CPU, small data slices, minutes). The real benchmark "
          "runs on a GPU: `python -m harness run --grid --preset default`.", file=sys.stderr)
    return preset_path("smoke")


RERUN_HINT = {"completed": "--force", "refused": "--force", "failed": "--retry-failed"}


def cmd_run(args: argparse.Namespace) -> None:
    from harness.grid.plan import make_plan
    from harness.grid.scheduler import run_session

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    if args.executor != "ray" and (args.address or args.gpus_per_run is not None):
        raise ConfigError("--address and --gpus-per-run need --executor ray")
    if args.gpus_per_run is not None and args.gpus_per_run < 0:
        raise ConfigError(f"--gpus-per-run must be 0 or more, got {args.gpus_per_run}")
    if args.executor == "ray":
        from harness.grid.ray_executor import import_ray

        import_ray()  # missing Ray fails here, before anything is read or written
    if not args.grid_mode and not (args.task and args.reward):
        raise ConfigError("a single run needs --task and --reward (or use --grid for the whole grid)")
    includes = _include(args)
    grid = load_grid(_choose_grid(args))
    overrides = {k: v for k, v in {"model": args.model, "epochs": args.epochs, "lr": args.lr,
                                   "batch_size": args.batch_size, "max_train": args.max_train,
                                   "max_eval": args.max_eval}.items() if v is not None}
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    source = DataSource(data_dir=data_dir, hub_variant=args.hub_variant)
    print(f"grid {grid.name} ({grid.source}); data: {data_dir or 'Hugging Face Hub'}; store: {args.store}",
          file=sys.stderr)
    store = Store(args.store, keep_checkpoints=args.keep_checkpoints)
    plan = make_plan(grid, source, store, _names(args.task), _names(args.reward), args.seed, overrides,
                     single=not args.grid_mode, force=args.force, retry_failed=args.retry_failed)
    for cell in plan.done:
        print(f"{cell.label}: {cell.stored} already, skipped ({RERUN_HINT[cell.stored]} reruns it)", file=sys.stderr)
    if not plan.todo:
        return
    session = run_session(plan, store, source, command="python -m harness " + shlex.join(sys.argv[1:]),
                          executor=args.executor, jobs=args.jobs, progress=not args.quiet, address=args.address,
                          gpus_per_run=args.gpus_per_run, includes=list(dict.fromkeys([*includes, *grid.includes])))
    print(f"{grid.name}: {summary_line(session, session['runs'])}", file=sys.stderr)
    if session["failures"]:
        sys.exit(failure_summary(session["failures"]))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from harness.run.evaluation import evaluate_run

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

    _include(args)
    overrides = {k: v for k, v in {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                                   "lr": args.lr, "max_train": args.max_train, "max_eval": args.max_eval,
                                   "compile": args.compile or None}.items() if v is not None}
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    bench.main(args.task, overrides, data_dir, args.peak_tflops, args.repeats, Path(args.json) if args.json else None)


def cmd_report(args: argparse.Namespace) -> None:
    from harness.report.writers import write_report

    _include(args)
    formats = [name for names in args.format for name in names] if args.format else None
    write_report(Store(args.store), Path(args.out), n_resamples=args.resamples, formats=formats,
                 allow_mixed=args.allow_mixed, strict=args.strict)


def cmd_leaderboard(args: argparse.Namespace) -> None:
    from harness.report.writers import print_leaderboards

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
    from harness.report.writers import canonical, formats

    top = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="tasks, reward strategies, models, report formats and presets")
    _include_option(listing)
    listing.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="fine-tune one cell, or every cell of a grid")
    run.add_argument("--grid", dest="grid_mode", action="store_true", help="run every task x reward x seed")
    run.add_argument("--grid-file", dest="grid", help="a grid YAML file (default: the preset)")
    run.add_argument("--preset", help=f"a shipped grid: {', '.join(list_presets())} "
                                      "(default: `default` on a GPU, `smoke` otherwise)")
    run.add_argument("--task", action="append", help="only these tasks (repeat or comma-separate)")
    run.add_argument("--reward", action="append", help="only these reward strategies")
    run.add_argument("--seed", action="append", type=int, help="only these seeds (repeat for several)")
    run.add_argument("--model", help="model alias, Hub id or local path for every task")
    run.add_argument("--epochs", type=int)
    run.add_argument("--lr", type=float)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--max-train", type=int, help="use the first N training rows")
    run.add_argument("--max-eval", type=int, help="use the first N validation and test rows")
    run.add_argument("--data-dir", help="local data folder (default $HARNESS_DATA_DIR; unset: the Hub)")
    run.add_argument("--hub-variant", help="an alternative Hub data set of the task (e.g. wmt16, xsum)")
    run.add_argument("--store", default=str(default_store()), help="results store (default $HARNESS_STORE or runs/)")
    run.add_argument("--force", action="store_true", help="rerun cells that already have a record")
    run.add_argument("--retry-failed", action="store_true", help="rerun cells recorded as failed")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
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
        bench.add_argument(name, type=convert, help="default: the `default` preset's setting for the task")
    bench.add_argument("--compile", action="store_true", help="torch.compile the harness's training forward")
    bench.add_argument("--data-dir", help="local data folder (default $HARNESS_DATA_DIR; unset: the Hub)")
    bench.add_argument("--peak-tflops", type=float,
                       help="the device's peak, for the fraction of it reached (default 989: H100 bf16 dense)")
    bench.add_argument("--repeats", type=int, default=1,
                       help="measure the pair N times in alternating order and report medians (default 1)")
    bench.add_argument("--json", help="also write the figures, command, date, device and versions here")
    _include_option(bench)
    bench.set_defaults(func=cmd_bench)

    report = sub.add_parser("report", help="tables and leaderboards from the stored results")
    report.add_argument("--store", default=str(default_store()))
    report.add_argument("--out", default="results")
    report.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    report.add_argument("--format", action="append", type=_report_formats, metavar="FORMAT",
                        help=f"write only these formats (repeat or comma-separate): {', '.join(formats())} "
                             "(default: all; `harness list` says what each writes)")
    _reading_options(report)
    _include_option(report)
    report.set_defaults(func=cmd_report)

    board = sub.add_parser("leaderboard", help="print the overall and per-task leaderboards (writes no files)")
    board.add_argument("--store", default=str(default_store()))
    board.add_argument("--task", action="append", help="only these tasks (repeat or comma-separate)")
    board.add_argument("--format", choices=formats(printable=True), type=canonical, default="md",
                       help="what to print (default md; latex is tex)")
    board.add_argument("--resamples", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    _reading_options(board)
    _include_option(board)
    board.set_defaults(func=cmd_leaderboard)
    return top


def main(argv: list[str] | None = None) -> None:
    from harness.report import ReportError
    from tasks.formats import DataFormatError

    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (ConfigError, StoreError, DataFormatError, ReportError) as err:  # each names the file, line or key
        sys.exit(f"error: {err}")
    except KeyboardInterrupt as err:  # a grid's says how far it got (harness.grid.scheduler.Interrupted)
        print(f"\ninterrupted; {err or 'rerun the same command to resume'}", file=sys.stderr)
        sys.exit(130)
