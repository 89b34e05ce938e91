"""Progress while a grid runs: plain lines in logs (no `\\r` bars), a grid line with k/N done,
failed, elapsed and ETA; on a terminal tqdm bars, one per running run when several run at once."""
from __future__ import annotations

import re

import pytest

from harness.cli import main
from harness.grid.progress import GridProgress, duration, estimate
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


def test_the_eta_scales_the_estimates_left_by_how_the_finished_runs_went(monkeypatch):
    """Two cheap runs left after a dear one: the ETA follows their estimates, not the mean so far,
    corrected by the finished run's actual time against its estimate."""
    clock = [1000.0]
    monkeypatch.setattr("harness.grid.progress.time.time", lambda: clock[0])
    progress = GridProgress(3, {0: 400.0, 1: 50.0, 2: 50.0}, bars=False, started_at=1000.0)
    clock[0] += 200.0  # the 400 s run took 200 s: this machine is twice as fast as the store's
    progress.finished(0, "[1/3] summarization ce seed 1 (abc): test rouge1 20.0 (200 s)", "completed")
    assert progress.eta() == 50.0  # (50 + 50) x 200 / 400; the mean so far would say 400
    without = GridProgress(3, {0: 400.0}, bars=False, started_at=1000.0)  # estimates missing for runs left
    without.finished(0, "done", "completed")
    assert without.eta() == 400.0  # 200 s per finished run x 2 left


def test_runs_that_failed_at_once_or_ran_elsewhere_do_not_speed_up_the_eta(monkeypatch):
    """A run that fails in a second, or that another grid ran, spent none of this grid's time on its
    estimate: counting it as done work would make the grid look fast and the ETA read low."""
    clock = [1000.0]
    monkeypatch.setattr("harness.grid.progress.time.time", lambda: clock[0])
    progress = GridProgress(4, {0: 100.0, 1: 100.0, 2: 100.0, 3: 100.0}, bars=False, started_at=1000.0)
    clock[0] += 1.0
    progress.finished(0, "[1/4] ner ce seed 1 (abc): failed: bad config", "failed")
    assert progress.eta() == 300.0  # no run completed here yet: the estimates of the three left
    progress.finished(1, "[2/4] ner ce seed 2 (def): completed by another grid on this store", "completed", here=False)
    assert progress.eta() == 200.0
    clock[0] += 99.0  # the third run takes its estimate
    progress.finished(2, "[3/4] ner ce seed 3 (ghi): test f1 60.0 (99 s)", "completed")
    assert progress.eta() == 100.0  # 100 s left x 100 s elapsed / 100 s of estimates completed here


def test_an_unseen_cell_is_guessed_from_its_runs_on_other_tasks():
    """A strategy never run on this task is guessed from its cost relative to ce elsewhere, not
    from this task's other strategies (a run from ce's checkpoint costs a fraction of ce's)."""
    times = {("translation", "ce"): [240.0], ("translation", "ce_continued"): [48.0],
             ("ner", "ce"): [70.0], ("ner", "ce_continued"): [35.0],
             ("summarization", "ce"): [430.0], ("summarization", "focal"): [410.0]}
    guess = estimate("summarization", "ce_continued", times)
    assert not guess.measured and "other tasks" in guess.basis
    assert guess.seconds == pytest.approx(430.0 * (48 / 240 + 35 / 70) / 2)
    assert estimate("summarization", "rlhf", times).seconds == 420.0  # no run anywhere: the task's mean
    assert estimate("summarization", "focal", times).measured

