"""The report's statistics against known values and by simulation: the t interval against scipy, Holm
against a textbook example, the paired bootstrap against a plain numpy loop on a fixed seed,
resampled corpus metrics (calibration included) against the task scorers rerun from scratch on each
resample, the seed-aware test's size on simulated null grids, the overall aggregate's centring under
the null, and tied ranks consistent with the pairwise tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness.report import stats
from tasks.base import get_task
from tests.synthetic import calibration, predictions, references


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


@pytest.mark.parametrize("task_name", ["ner", "sentiment"])
def test_resampled_calibration_equals_the_aggregate_on_each_resample(task_name: str) -> None:
    """ECE, NLL and Brier from per-example bin counts whose occupied bins differ from example to
    example (an absent bin counts as empty): each resample's values are the aggregate's on it."""
    task = get_task(task_name)
    refs = references(task_name)
    preds = predictions(task_name, 0.3, 1)
    per_example = [{**s, **c} for s, c in zip(task.score(preds, refs).per_example,
                                              calibration(task_name, preds, refs, 0.8, 1))]
    assert len({tuple(sorted(row["cal_bins"])) for row in per_example}) > 1
    indices = stats.resample_indices(len(refs), 12, seed=5)
    metrics = [task.main_metric, "ece", "nll", "brier"]
    got = stats.resampled_metrics(per_example, task.aggregate, metrics, indices)
    for metric in metrics:
        expected = [task.aggregate([per_example[i] for i in row])[metric] for row in indices]
        np.testing.assert_allclose(got[metric], expected, rtol=1e-9, atol=1e-9)


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


def _significant(n: int, *pairs: tuple[int, int]) -> np.ndarray:
    sig = np.zeros((n, n), dtype=bool)
    for i, j in pairs:
        sig[i, j] = sig[j, i] = True
    return sig


def test_tied_ranks_tie_what_is_not_significant() -> None:
    means = [90.0, 89.9, 85.0, 84.9]
    # the leader beats 2 and 3; 0 vs 1 and 2 vs 3 do not differ
    assert stats.tied_ranks(means, _significant(4, (0, 2), (0, 3))).tolist() == [1, 1, 3, 3]
    assert stats.tied_ranks(means, _significant(4)).tolist() == [1, 1, 1, 1]
    everything = _significant(4, *[(i, j) for i in range(4) for j in range(i)])
    assert stats.tied_ranks(means, everything).tolist() == [1, 2, 3, 4]


def test_tied_ranks_never_tie_a_significant_pair() -> None:
    """Today's failure: the leader (ce) does not differ from the runner-up, the runner-up does not
    differ from a third, but the third is significantly below the leader: it must not share rank 1."""
    means = [80.0, 79.0, 78.0]  # ce, a, reinforce
    ranks = stats.tied_ranks(means, _significant(3, (0, 2)))
    assert ranks.tolist() == [1, 1, 3]
    rng = np.random.default_rng(0)
    for _ in range(200):  # any means and any pattern of significant pairs
        n = int(rng.integers(2, 8))
        means = rng.normal(size=n)
        upper = np.triu(rng.random((n, n)) < 0.3, 1)
        sig = upper | upper.T
        ranks = stats.tied_ranks(means, sig)
        for i in range(n):
            for j in range(n):
                if sig[i, j]:
                    assert ranks[i] != ranks[j]
                if means[i] > means[j]:
                    assert ranks[i] <= ranks[j]  # ranks never contradict the means


def test_tied_ranks_follow_the_order_of_the_means() -> None:
    """A significantly worse strategy closes the leader's group even if a lower one is not
    significantly worse (its interval is wider): ranks never contradict the means."""
    means = [80.0, 90.0, 70.0]
    assert stats.tied_ranks(means, _significant(3, (0, 1))).tolist() == [2, 1, 2]


# ---- the seed-aware test by simulation -------------------------------------------------------------

N_EXAMPLES, N_SEEDS, SEED_SD, RESAMPLES, GRIDS = 1000, 3, 0.5, 200, 4000


def _mean_aggregate(rows: list[dict]) -> dict[str, float]:
    return {"score": float(np.mean([r["score"] for r in rows]))}


def _null_grids(rng: np.random.Generator, grids: int, shift_sd: float, effect_sd: float, counts: np.ndarray,
                seeds: int = N_SEEDS) -> tuple[np.ndarray, ...]:
    """`grids` simulated test sets of a mean metric (points, 0-100 scale), each scored by `seeds`
    runs of a strategy with no effect and of ce: example difficulty shared by every run; per run a
    shift of the whole run (SD `shift_sd`) plus per-example noise, together a seed-to-seed SD of
    `SEED_SD` points; per example an effect of the strategy that is zero on average over the
    population of examples (SD `effect_sd`: the test-set sampling source). Returns the full-set
    scores [grids, seeds] and resampled scores [grids, seeds, B] of both."""
    noise_sd = math.sqrt((SEED_SD ** 2 - shift_sd ** 2) * N_EXAMPLES)
    difficulty = rng.normal(70, 20, (grids, 1, N_EXAMPLES))
    effect = rng.normal(0, effect_sd, (grids, 1, N_EXAMPLES))

    def runs(extra: np.ndarray | float) -> np.ndarray:
        return (difficulty + extra + rng.normal(0, shift_sd, (grids, seeds, 1))
                + rng.normal(0, noise_sd, (grids, seeds, N_EXAMPLES)))

    system, baseline = runs(effect), runs(0.0)
    return (system.mean(-1), system @ counts.T / N_EXAMPLES, baseline.mean(-1), baseline @ counts.T / N_EXAMPLES,
            system, baseline)


def _counts(indices: np.ndarray) -> np.ndarray:
    counts = np.zeros(indices.shape)
    np.add.at(counts, (np.arange(len(indices))[:, None], indices), 1)
    return counts


def test_simulated_resamples_are_the_reports():
    """The simulation's matrix shortcut is what `resampled_scores` computes for a mean metric."""
    indices = stats.resample_indices(N_EXAMPLES, RESAMPLES, seed=1)
    *_, system, _ = _null_grids(np.random.default_rng(5), 1, 0.3, 5.0, _counts(indices))
    rows = [{"score": float(v)} for v in system[0, 0]]
    np.testing.assert_allclose(stats.resampled_scores(rows, _mean_aggregate, "score", indices),
                               system[0, 0] @ _counts(indices).T / N_EXAMPLES, rtol=1e-9)


@pytest.mark.parametrize("regime, shift_sd, effect_sd", [
    ("seeds shift whole runs", 0.45, 0.0),  # what the test-set bootstrap alone cannot see
    ("shifts, per-example noise and per-example effects", 0.3, 8.0),
])
def test_seed_aware_test_holds_its_size_on_null_grids(regime: str, shift_sd: float, effect_sd: float) -> None:
    """A strategy with no true effect whose seeds vary (seed SD 0.5 points, 3 seeds, 1,000 test
    examples): the nominal 5% test rejects on at most 6% of simulated grids, at 95% confidence
    (one-sided Clopper-Pearson bound on the rejection rate over 4,000 independent grids); the
    test-set bootstrap of the seed means, the report's former test, rejects far more often where
    seeds shift whole runs."""
    indices = stats.resample_indices(N_EXAMPLES, RESAMPLES, seed=1)
    counts, rng = _counts(indices), np.random.default_rng(2024)
    rejected = old_rejected = 0
    for block in range(0, GRIDS, 500):  # blocks of grids bound memory
        scores, resampled, base_scores, base_resampled, _, _ = _null_grids(rng, 500, shift_sd, effect_sd, counts)
        out = stats.seed_aware(scores, resampled, base_scores, base_resampled)
        rejected += int(np.count_nonzero(out["p"] < 0.05))
        old_rejected += sum(stats.paired_bootstrap(a.mean(0), b.mean(0), d).p_value < 0.05
                            for a, b, d in zip(resampled, base_resampled, out["delta"]))
    upper = scipy.stats.beta.ppf(0.95, rejected + 1, GRIDS - rejected)  # Clopper-Pearson, one-sided 95%
    assert upper <= 0.06, f"{regime}: {rejected}/{GRIDS} rejected, upper bound {upper:.3f}"
    assert rejected / GRIDS >= 0.02, f"{regime}: {rejected}/{GRIDS}: far below nominal, the test has lost power"
    if effect_sd == 0:
        assert old_rejected / GRIDS > 0.2


def test_seed_aware_test_has_power_and_consistent_intervals() -> None:
    """A real effect of 2 points (4 seed SDs) is found on nearly every grid; the interval excludes 0
    exactly when p < 0.05."""
    indices = stats.resample_indices(N_EXAMPLES, RESAMPLES, seed=1)
    scores, resampled, base_scores, base_resampled, _, _ = _null_grids(np.random.default_rng(3), 300, 0.3, 8.0,
                                                                       _counts(indices))
    out = stats.seed_aware(scores + 2.0, resampled + 2.0, base_scores, base_resampled)
    assert np.mean(out["p"] < 0.05) > 0.9
    excludes = (out["ci_low"] > 0) | (out["ci_high"] < 0)
    assert np.array_equal(excludes, out["p"] < 0.05)


def test_one_seed_allows_no_test() -> None:
    runs = stats.Runs([80.0], np.full((1, 10), 80.0))
    ce = stats.Runs([70.0, 71.0, 72.0], np.full((3, 10), 71.0))
    for a, b in ((runs, ce), (ce, runs)):
        result = stats.seed_aware_test(a, b)
        assert abs(result.delta) == 9.0 and math.isnan(result.p_value) and math.isnan(result.ci_low)
        assert math.isnan(result.effect) and not math.isnan(result.p_run)


def test_seed_aware_variance_adds_both_sources() -> None:
    """se² is the seeds' variance plus the test-set variance of the seed-averaged difference; runs that
    differ from the baseline's only by a shift add no test-set variance."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, (1, 50))
    system = stats.Runs([1.0, 2.0, 3.0], noise + np.array([[1.0], [2.0], [3.0]]))
    baseline = stats.Runs([0.0, 0.0, 0.0], np.zeros((3, 50)))
    result = stats.seed_aware_test(system, baseline)
    assert result.seed_var == pytest.approx(1 / 3) and result.example_var == pytest.approx(np.var(noise, ddof=1))
    assert result.se ** 2 == pytest.approx(result.seed_var + result.example_var)
    # Welch–Satterthwaite: only the seed part is estimated from few values (2 degrees of freedom)
    assert result.df == pytest.approx(result.se ** 4 / ((1 / 3) ** 2 / 2))
    shifted = stats.Runs([1.0, 2.0, 3.0], np.tile(noise, (3, 1)) + np.array([[1.0], [2.0], [3.0]]))
    assert stats.seed_aware_test(shifted, stats.Runs([0.0] * 3, np.tile(noise, (3, 1)))).example_var == pytest.approx(0)


def _paired_grids(rng: np.random.Generator, grids: int, effect: float, counts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Grids whose seed shifts whole runs of both strategies alike (seed s of each starts from the same
    checkpoint): a shared shift of SD 0.45 points per seed, and per run its own shift (SD 0.1) and
    per-example noise. Returns full-set and resampled scores of both, seed-aligned."""
    noise_sd = math.sqrt((SEED_SD ** 2 - 0.45 ** 2 - 0.1 ** 2) * N_EXAMPLES)
    difficulty = rng.normal(70, 20, (grids, 1, N_EXAMPLES))
    shared = rng.normal(0, 0.45, (grids, N_SEEDS, 1))

    def runs(extra: float) -> np.ndarray:
        return (difficulty + extra + shared + rng.normal(0, 0.1, (grids, N_SEEDS, 1))
                + rng.normal(0, noise_sd, (grids, N_SEEDS, N_EXAMPLES)))

    system, baseline = runs(effect), runs(0.0)
    return system.mean(-1), system @ counts.T / N_EXAMPLES, baseline.mean(-1), baseline @ counts.T / N_EXAMPLES


def test_seed_paired_test_holds_its_size_and_gains_power_where_seeds_are_shared() -> None:
    """Where a seed moves both strategies alike, the paired test keeps its nominal 5% on null grids
    (one-sided 95% Clopper-Pearson bound ≤ 6%, 4,000 grids) and finds an effect of 0.75 points (1.5
    seed SDs) far more often than the unpaired test, which counts the shared shift as noise (on
    these grids about 63% against 33% of the time)."""
    indices = stats.resample_indices(N_EXAMPLES, RESAMPLES, seed=1)
    counts, rng = _counts(indices), np.random.default_rng(7)
    rejected = 0
    for block in range(0, GRIDS, 500):
        rejected += int(np.count_nonzero(stats.seed_paired(*_paired_grids(rng, 500, 0.0, counts))["p"] < 0.05))
    upper = scipy.stats.beta.ppf(0.95, rejected + 1, GRIDS - rejected)
    assert upper <= 0.06 and rejected / GRIDS >= 0.02, f"{rejected}/{GRIDS} null grids rejected"
    grids = _paired_grids(rng, 500, 0.75, counts)
    paired, unpaired = stats.seed_paired(*grids), stats.seed_aware(*grids)
    assert np.mean(paired["p"] < 0.05) > np.mean(unpaired["p"] < 0.05) + 0.2
    assert np.array_equal((paired["ci_low"] > 0) | (paired["ci_high"] < 0), paired["p"] < 0.05)


def test_seed_paired_is_the_paired_t_test_without_test_set_noise() -> None:
    """Per-seed differences 1, 2, 3 and no test-set variance: se² = var(d)/k = 1/3 on 2 degrees of
    freedom, whatever the seeds' common level (here 50, 60, 90 on both sides)."""
    level = np.array([50.0, 60.0, 90.0])
    out = stats.seed_paired(level + [1.0, 2.0, 3.0], np.tile((level + [1.0, 2.0, 3.0])[:, None], 20),
                            level, np.tile(level[:, None], 20))
    assert float(out["delta"]) == 2.0 and float(out["seed_var"]) == pytest.approx(1 / 3)
    assert float(out["example_var"]) == 0 and float(out["df"]) == pytest.approx(2.0)
    assert float(out["p"]) == pytest.approx(scipy.stats.ttest_rel(level + [1.0, 2.0, 3.0], level).pvalue)
    unpaired = stats.seed_aware(level + [1.0, 2.0, 3.0], np.tile((level + [1.0, 2.0, 3.0])[:, None], 20),
                                level, np.tile(level[:, None], 20))
    assert float(unpaired["p"]) > 0.9  # the seeds' common level swamps the unpaired test


def test_the_same_difference_on_every_seed_is_not_certain() -> None:
    """A strategy that gets one more test example wrong than its baseline on every seed (a different
    one each time) has s²_d = 0; the test-set variance of that one example is still counted, so the
    paired test does not call a −1 point difference on 100 examples certain."""
    indices = stats.resample_indices(100, 500, seed=3)
    counts = _counts(indices)
    correct = np.ones((3, 100))
    worse = correct.copy()
    worse[[0, 1, 2], [5, 40, 77]] = 0.0
    level = np.array([[0.1], [0.3], [0.7]])  # seeds' common offsets: d_s equal only up to rounding
    out = stats.seed_paired(100 * worse.mean(-1) + level[:, 0], 100 * worse @ counts.T / 100 + level,
                            100 * correct.mean(-1) + level[:, 0], 100 * correct @ counts.T / 100 + level)
    assert float(out["delta"]) == pytest.approx(-1.0) and float(out["seed_var"]) == pytest.approx(0, abs=1e-20)
    assert float(out["example_var"]) > 0 and float(out["p"]) > 0.05


def test_seed_paired_test_pairs_runs_by_seed_not_by_position() -> None:
    """Runs are paired by their seed ids, in any stored order, on the seeds both ran; fewer than two
    shared seeds give no paired test."""
    rng = np.random.default_rng(1)
    resampled = rng.normal(0, 0.1, (3, 30))
    system = stats.Runs([71.0, 62.0, 93.0], resampled + [[71.0], [62.0], [93.0]], ids=(1, 2, 3))
    ce = stats.Runs([70.0, 60.0, 90.0], np.zeros((3, 30)) + [[70.0], [60.0], [90.0]], ids=(1, 2, 3))
    shuffled = stats.Runs(system.scores[[2, 0, 1]], system.resampled[[2, 0, 1]], ids=(3, 1, 2))
    first, second = stats.seed_aware_test(system, ce).paired, stats.seed_aware_test(shuffled, ce).paired
    assert first is not None and second is not None
    assert (first.delta, first.p_value) == pytest.approx((second.delta, second.p_value)) and first.delta == 2.0
    extra = stats.Runs([80.0, 71.0, 62.0, 93.0], np.vstack([resampled[:1], system.resampled]), ids=(4, 1, 2, 3))
    assert stats.seed_paired_test(extra, ce).delta == pytest.approx(2.0)  # seed 4 has no partner
    lone = stats.Runs([71.0, 80.0], resampled[:2], ids=(1, 5))
    assert stats.seed_paired_test(lone, ce) is None and stats.seed_aware_test(lone, ce).paired is None
    assert stats.seed_paired_test(stats.Runs([1.0, 2.0], np.zeros((2, 3))), ce) is None  # seeds not known
    with pytest.raises(ValueError, match="one distinct seed id per run"):
        stats.Runs([1.0, 2.0], np.zeros((2, 3)), ids=(1, 1))


# ---- the overall aggregate under the null ----------------------------------------------------------

def test_overall_aggregate_is_centred_on_zero_for_a_null_strategy() -> None:
    """Four tasks at different places on the 0-100 scale, ce steady and the strategy noisy (seed SD
    2 points against 0.5), no true effect anywhere: the mean standardised effect over tasks and
    wins − losses are centred on zero; the former mean normalised change, in the same simulation,
    is not (it divides gains by ce's small headroom near 100 and losses by its large score)."""
    rng = np.random.default_rng(11)
    grids, levels = 4000, np.array([30.0, 60.0, 90.0, 97.0])
    system = levels[None, :, None] + rng.normal(0, 2.0, (grids, levels.size, N_SEEDS))
    ce = levels[None, :, None] + rng.normal(0, 0.5, (grids, levels.size, N_SEEDS))
    g = stats.standardised_effect(system, ce)  # [grids, tasks]
    mean_g = g.mean(-1)
    assert abs(mean_g.mean()) < 3 * mean_g.std(ddof=1) / math.sqrt(grids)
    flat = np.zeros((*system.shape, 2))  # resampled scores without test-set variance: the seeds' alone
    p = stats.seed_aware(system, flat, ce, flat)["p"]
    delta = system.mean(-1) - ce.mean(-1)
    net = ((p < 0.05) & (delta > 0)).sum(-1) - ((p < 0.05) & (delta < 0)).sum(-1)
    assert abs(net.mean()) < 3 * net.std(ddof=1) / math.sqrt(grids)
    s, b = system.mean(-1), ce.mean(-1)
    normalised = np.where(s > b, 100 * (s - b) / (100 - b), 100 * (s - b) / b).mean(-1)
    assert normalised.mean() > 5 * normalised.std(ddof=1) / math.sqrt(grids)
