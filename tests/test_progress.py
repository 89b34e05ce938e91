"""Progress while a grid runs: plain lines in logs (no `\\r` bars), a grid line with k/N done,
failed, elapsed and ETA; on a terminal tqdm bars, one per running run when several run at once."""
from __future__ import annotations

import re

from harness.cli import main
from harness.grid.progress import GridProgress, duration
from tests.helpers import write_grid


def test_log_output_has_plain_lines_and_a_grid_line_per_finished_run(tmp_path, data_dir, capsys):
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=("ce", "focal"), epochs=1, max_train=16, max_eval=8)
    main(["run", "--grid", "--grid-file", str(grid), "--store", str(tmp_path / "s"), "--data-dir", str(data_dir)])
    err = capsys.readouterr().err
    assert "\r" not in err  # stderr is not a terminal here: no bars
    assert "resolved configuration:\nname: tiny" in err
    assert "sentiment/focal seed 1 epoch 1: loss" in err  # the run's own per-epoch line
    grid_lines = [line for line in err.splitlines() if line.startswith("grid: ")]
    assert [line.split(",")[0] for line in grid_lines] == ["grid: 1/2 done", "grid: 2/2 done"]
    assert re.search(r"grid: 2/2 done, 0 failed, elapsed \d+ s, ETA 0 s", grid_lines[-1])



def test_bars_on_a_terminal_show_the_grid_and_each_running_run(capsys):
    progress = GridProgress(3, {0: 30.0, 1: 30.0, 2: 60.0}, bars=True)
    assert progress.eta() == 120.0  # before any run finishes: the estimates
    progress.started(0, "[1/3] ner ce seed 1 (abc)", parallel=True)
    progress.started(1, "[2/3] ner focal seed 1 (def)", parallel=True)
    progress.finished(0, "[1/3] ner ce seed 1 (abc): failed: boom", "failed")
    progress.close()
    err = capsys.readouterr().err
    assert "  [2/3] ner focal seed 1 (def): running since" in err and "[1/3] ner ce seed 1 (abc): failed: boom" in err
    assert re.search(r"grid: 1/3 done, 1 failed, ETA", err)
    assert progress.done == 1 and progress.failed == 1


def test_log_lines_for_runs_started_at_once(capsys):
    progress = GridProgress(2, bars=False)
    progress.started(0, "[1/2] ner ce seed 1 (abc)", parallel=True)
    progress.started(1, "[2/2] ner ce seed 2 (def)", parallel=False)  # in-process: the run prints its epochs
    err = capsys.readouterr().err
    assert re.fullmatch(r"\[1/2\] ner ce seed 1 \(abc\): started \d\d:\d\d:\d\d\n", err)


def test_durations():
    assert [duration(s) for s in (0, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]
