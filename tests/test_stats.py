"""The report's statistics against known values: the t interval against scipy, Holm against a textbook
example, the paired bootstrap against a plain numpy loop on a fixed seed, resampled corpus metrics
against the task scorers rerun from scratch on each resample, and tied ranks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness.report import stats
from harness.report.analysis import normalised_change
from tasks.base import get_task
from tests.synthetic import predictions, references


def test_seed_summary_is_the_student_t_interval() -> None:
    values = [91.2, 90.4, 92.3, 91.0]
    summary = stats.seed_summary(values)
    low, high = scipy.stats.t.interval(0.95, df=3, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert summary.n == 4 and summary.mean == pytest.approx(91.225)
    assert summary.std == pytest.approx(np.std(values, ddof=1))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_seed_summary_of_one_seed_has_no_spread() -> None:
    summary = stats.seed_summary([80.0])
    assert summary.n == 1 and summary.mean == 80.0
    assert math.isnan(summary.std) and math.isnan(summary.ci_low) and math.isnan(summary.ci_high)
    with pytest.raises(ValueError):
        stats.seed_summary([])


def test_holm_textbook_example() -> None:
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_is_monotone_and_capped_at_one() -> None:
    np.testing.assert_allclose(stats.holm([0.01, 0.02, 0.03]), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])
    assert stats.holm([]).size == 0


def test_resample_indices_are_fixed_by_the_seed() -> None:
    a, b = stats.resample_indices(50, 10, seed=3), stats.resample_indices(50, 10, seed=3)
    assert a.shape == (10, 50) and np.array_equal(a, b) and a.min() >= 0 and a.max() < 50
    assert not np.array_equal(a, stats.resample_indices(50, 10, seed=4))


def test_paired_bootstrap_matches_a_numpy_reference_on_a_fixed_seed() -> None:
    """Accuracy of two classifiers, the test written out as loops over resamples in numpy."""
    task = get_task("sentiment")
    refs = references("sentiment")
    system, baseline = predictions("sentiment", 0.2, 1), predictions("sentiment", 0.35, 1)
    per = {name: task.score(p, refs).per_example for name, p in (("system", system), ("baseline", baseline))}
    indices = stats.resample_indices(len(refs), 500, seed=11)
    scores = {name: stats.resampled_scores(rows, task.aggregate, "accuracy", indices) for name, rows in per.items()}
    observed = task.score(system, refs).corpus["accuracy"] - task.score(baseline, refs).corpus["accuracy"]
    result = stats.paired_bootstrap(scores["system"], scores["baseline"], observed)

    correct_s = np.array(system) == np.array(refs)
    correct_b = np.array(baseline) == np.array(refs)
    rng = np.random.default_rng(11)
    diffs = []
    for _ in range(500):
        pick = rng.integers(0, len(refs), size=len(refs))  # the same draw as resample_indices
        diffs.append(100 * correct_s[pick].mean() - 100 * correct_b[pick].mean())
    diffs = np.array(diffs)
    p = (1 + np.sum(np.abs(diffs - diffs.mean()) >= abs(observed))) / 501
    assert result.delta == pytest.approx(observed)
    assert result.p_value == pytest.approx(p)
    assert (result.ci_low, result.ci_high) == (pytest.approx(np.percentile(diffs, 2.5)),
                                               pytest.approx(np.percentile(diffs, 97.5)))


def test_paired_bootstrap_extremes() -> None:
    same = np.linspace(50, 60, 200)
    assert stats.paired_bootstrap(same, same, 0.0).p_value == 1.0
    clearly_better = stats.paired_bootstrap(same + 10 + np.sin(same), same, 10.0)
    assert clearly_better.p_value == pytest.approx(1 / 201)
    assert 8 < clearly_better.ci_low < clearly_better.ci_high < 12


@pytest.mark.parametrize("task_name, metric", [("ner", "f1"), ("ner", "token_accuracy"), ("sentiment", "accuracy"),
                                                ("sentiment", "macro_f1"), ("translation", "bleu"),
                                                ("translation", "chrf"), ("summarization", "rouge1")])
def test_resampled_scores_equal_the_scorer_rerun_on_each_resample(task_name: str, metric: str) -> None:
    """Whichever way `resampled_scores` takes (per-example mean, summed statistics or the plain
    aggregate), each resample's score is what the task's scorer gives on the resampled lists."""
    task = get_task(task_name)
    refs = references(task_name)
    preds = predictions(task_name, 0.4, 2)
    per_example = task.score(preds, refs).per_example
    indices = stats.resample_indices(len(refs), 12, seed=5)
    got = stats.resampled_scores(per_example, task.aggregate, metric, indices)
    expected = [task.score([preds[i] for i in row], [refs[i] for i in row]).corpus[metric] for row in indices]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("error", [0.0, 1.0])
def test_resampled_scores_of_degenerate_classifiers(error: float) -> None:
    """Always right or always wrong: summed labels balance by chance on some resamples, so a
    shortcut through label sums would be right on the full set and wrong there."""
    task = get_task("sentiment")
    refs = references("sentiment")[:44]  # an even number of examples, 24 of them positive
    assert 2 * sum(refs) != len(refs)  # unbalanced on the full set: only resamples can balance
    preds = [r if error == 0 else 1 - r for r in refs]
    indices = stats.resample_indices(len(refs), 200, seed=1)
    for metric in ("accuracy", "macro_f1"):
        got = stats.resampled_scores(task.score(preds, refs).per_example, task.aggregate, metric, indices)
        expected = [task.score([preds[i] for i in row], [refs[i] for i in row]).corpus[metric] for row in indices]
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_tied_ranks_tie_what_is_not_significant() -> None:
    means = [90.0, 89.9, 85.0, 84.9]
    p = np.ones((4, 4))
    p[0, 2] = p[2, 0] = p[0, 3] = p[3, 0] = 0.001  # the leader beats 2 and 3; 0 vs 1 and 2 vs 3 do not differ
    assert stats.tied_ranks(means, p).tolist() == [1, 1, 3, 3]
    assert stats.tied_ranks(means, np.ones((4, 4))).tolist() == [1, 1, 1, 1]
    everything = np.full((4, 4), 0.001)
    assert stats.tied_ranks(means, everything).tolist() == [1, 2, 3, 4]


def test_tied_ranks_follow_the_order_of_the_means() -> None:
    """A significantly worse strategy closes the leader's group even if a lower one is not
    significantly worse (its interval is wider): ranks never contradict the means."""
    means = [80.0, 90.0, 70.0]
    p = np.ones((3, 3))
    p[1, 0] = p[0, 1] = 0.001  # 90 vs 80 significant, 90 vs 70 not
    assert stats.tied_ranks(means, p).tolist() == [2, 1, 2]


def test_holm_inside_tied_ranks() -> None:
    """Raw p = 0.03 and 0.04 against the leader: Holm makes them 0.06 and 0.06, so all tie."""
    means = [3.0, 2.0, 1.0]
    p = np.ones((3, 3))
    p[0, 1] = p[1, 0] = 0.03
    p[0, 2] = p[2, 0] = 0.04
    assert stats.tied_ranks(means, p).tolist() == [1, 1, 1]


def test_normalised_change_follows_marx_and_cummings() -> None:
    assert normalised_change(60, 50) == pytest.approx(20.0)  # closes 10 of the 50 points of headroom
    assert normalised_change(40, 50) == pytest.approx(-20.0)  # gives up 10 of the 50 points held
    assert normalised_change(50, 50) == 0.0
    # the cases a gain relative to ce's score cannot express: ce at 0 and ce at the ceiling
    assert normalised_change(5, 0) == pytest.approx(5.0) and normalised_change(0, 0) == 0.0
    assert normalised_change(90, 100) == pytest.approx(-10.0) and normalised_change(100, 100) == 0.0
    assert normalised_change(100, 0) == 100.0 and normalised_change(0, 100) == -100.0
