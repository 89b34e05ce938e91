"""From run records to the numbers a report shows: seed summaries, seed-aware significance against
the `ce` baseline and the controls, tied ranks, the cross-task leaderboard, calibration, guard
metrics and cost. Only numbers, in DataFrames with NaN where a cell has no value;
`harness.report.tables` formats and writes them.

A cell is one task × strategy. A strategy is a reward name, with its parameters appended when
the records hold the same reward with different parameters, so such variants are never averaged.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from harness.overrides import cell_name, strategy_of
from harness.report import ReportError, stats
from harness.store import RunRecord
from rewards.base import BASELINE, REWARDS
from rewards.constant_reward import ConstantReward
from tasks.base import get_task
from tasks.metrics import mean_words

ALPHA = 0.05
MIN_SEEDS = 3  # fewer: a warning (spreads and intervals are unreliable)
MIN_TEST_SEEDS = 2  # fewer on either side: no test, no star, no rank (nothing is known about seed variance)
CALIBRATION = ("ece", "nll", "brier")  # calibration test metrics of classification and tagging; lower is better
REPETITION_N = 2  # repetition rate over word n-grams of this order (outputs are 10-30 words long)
NOT_STATISTICS = ("prediction", "reference")  # the other keys of a test example are its statistics
# Terms the sampling strategies log, shown per evaluation (curves) and at the final one (guards)
SAMPLING_TERMS = {"reward": "reward (task metric of the samples)", "rm_reward": "proxy reward (reward model)",
                  "kl": "KL to the reference (nats/output)", "entropy": "policy entropy (nats/token)",
                  "sample_length": "sample length (tokens)", "clip_fraction": "clip fraction",
                  "rm_heldout_accuracy": "reward model held-out accuracy"}


def strategy_class(label: str) -> type | None:
    """The registered strategy class of a report label (`focal`, `focal[gamma=1]`), or None when the
    report's process does not know it (an --include not given)."""
    return REWARDS.get(strategy_of(label))


def is_sampling(strategy: str) -> bool:
    cls = strategy_class(strategy)
    return cls is not None and cls.family == "sampling"


def started_from_checkpoint(runs: list[RunRecord]) -> bool:
    """Whether the cell's runs started from another run's checkpoint (a strategy class with
    `init_from`, e.g. "ce", whose parent run existed): the records say, not the class."""
    return any(r.init_from for r in runs)


@dataclass(frozen=True)
class Control:
    """A control run that strategies are compared with, in its own leaderboard column, on every
    task where the store has it: `applies(strategy, its completed runs)` says which strategies."""
    name: str
    what: str  # what the control is (methods text)
    compares: str  # which strategies are compared with it, in words
    applies: Callable[[str, list[RunRecord]], bool]


CONTROLS: tuple[Control, ...] = (
    Control(ConstantReward.name, "the same policy-gradient training with a reward that says nothing about the output",
            "sampling strategies", lambda strategy, runs: is_sampling(strategy)),
    Control("ce_continued", "cross-entropy continued from the ce checkpoint with the same schedule",
            "strategies started from a checkpoint", lambda strategy, runs: started_from_checkpoint(runs)),
)
CONTROL_NAMES = tuple(c.name for c in CONTROLS)


@dataclass
class Analysis:
    cells: pd.DataFrame  # task, strategy, metric, status, n, n_failed, n_refused, mean, std, ci_low, ci_high, rank, why
    test_means: pd.DataFrame  # task, strategy, metric, mean, std, n: every test metric of completed cells
    comparisons: pd.DataFrame  # task, metric, main, strategy, baseline, n, n_baseline, delta, ci_low, ci_high, se,
    #                            df, p, p_holm, significant, testable, effect, seed_sd, p_run, n_paired,
    #                            delta_paired, ci_low_paired, ci_high_paired, p_paired, p_holm_paired (the seed-
    #                            paired sensitivity test, on the seeds both ran), lower_is_better
    overall: pd.DataFrame  # strategy, mean_rank, tasks_ranked, tasks_scored, wins, ties, losses, tasks_tested,
    #                        mean_effect, tasks_effect
    guards: pd.DataFrame  # task, strategy, mean_length, repetition, empty_share, *SAMPLING_TERMS (final evaluation),
    #                       reward_rise, ece, nll, brier
    evaluations: pd.DataFrame  # task, strategy, seed, epoch, validation, output_length, *SAMPLING_TERMS
    over_optimised: pd.DataFrame  # task, strategy, term, reward_rise, metric, metric_change, against, significant
    cost: pd.DataFrame  # task, strategy, hardware, seconds, seconds_with_start, samples_per_second, delta, ...
    runs: pd.DataFrame  # one row per record: task, strategy, seed, status, hash, score, seconds, why
    groups: dict[tuple[str, str], list[RunRecord]]  # completed records per cell
    metrics: dict[str, str]  # task -> main metric
    n_resamples: int
    seed: int
    calibrated: list[str] = field(default_factory=list)  # tasks whose records can carry calibration
    notes: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.cells["task"].unique())

    def strategies(self, task: str | None = None) -> list[str]:
        rows = self.cells if task is None else self.cells[self.cells["task"] == task]
        return ordered(rows["strategy"].unique())

    def controls(self, task: str) -> list[str]:
        """The controls the task's strategies are compared with (those the store has there)."""
        rows = self.comparisons[(self.comparisons["task"] == task) & self.comparisons["main"]]
        present = set(rows["baseline"])
        return [name for name in CONTROL_NAMES if name in present]


def ordered(strategies: Iterable[str]) -> list[str]:
    """The baseline first, the controls next, then alphabetical."""
    rank = {name: i for i, name in enumerate((BASELINE, *CONTROL_NAMES))}
    return sorted(set(strategies), key=lambda s: (rank.get(s, len(rank)), s))


def analyse(records: list[RunRecord], n_resamples: int = 1000, seed: int = 0,
            allow_mixed: bool = False) -> Analysis:
    """Every number of the report from the records of a store (any status). A cell whose runs differ
    in more than the seed is a `ReportError` unless `allow_mixed` (then a note)."""
    if n_resamples < 1:
        raise ReportError(f"--resamples must be at least 1, got {n_resamples} (paired-bootstrap resamples for "
                          "the significance tests; the default is 1000)")
    if not records:
        raise ValueError("no run records to analyse")
    # A fixed order makes every float sum order-independent of the store's file order, so two
    # strategies with identical runs come out exactly equal.
    records = sorted(records, key=lambda r: (r.task, r.reward, r.seed, r.hash))
    labels = strategy_labels(records)
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        if record.status == "completed":
            groups[(record.task, labels[record.hash])].append(record)
    metrics = {r.task: r.main_metric for r in records if r.status == "completed"}
    for task in {r.task for r in records} - set(metrics):
        metrics[task] = get_task(task).main_metric
    notes: list[str] = []
    cells = _cells(records, labels, metrics, notes)
    calibrated = _calibration_notes(groups, notes)
    runs = {task: _task_runs(task, metrics[task], groups, n_resamples, seed, notes) for task in sorted(metrics)}
    comparisons = _comparisons(runs, groups, metrics)
    ranks = {(task, strategy): rank for task in runs
             for strategy, rank in _ranks(runs[task].get(metrics[task], {}), comparisons, task, metrics[task]).items()}
    cells["rank"] = [ranks.get(key, math.nan) for key in zip(cells["task"], cells["strategy"])]
    _one_seed_notes(cells, notes)
    _check_cells(groups, notes, allow_mixed)
    by_hash = {r.hash: r for r in records}
    test_means = _test_means(groups)
    guards, evals = _guards(groups, test_means), evaluations(groups)
    over_optimised = _over_optimised(guards, comparisons, evals, metrics, groups)
    for o in over_optimised.itertuples():
        notes.append(f"{o.task}/{o.strategy}: its optimised reward ({o.term}) rose by {o.reward_rise:+.3g} over training "
                     f"while {o.metric} fell by {o.metric_change:+.2f} ({o.against}"
                     f"{', significant' if o.significant else ''}): reward over-optimisation?")
    return Analysis(cells=cells, test_means=test_means, comparisons=comparisons,
                    overall=_overall(cells, comparisons), guards=guards, evaluations=evals,
                    over_optimised=over_optimised,
                    cost=_cost(groups, cells, by_hash), runs=_runs(records, labels, metrics), groups=dict(groups),
                    metrics=metrics, n_resamples=n_resamples, seed=seed, calibrated=calibrated, notes=notes)


def strategy_labels(records: list[RunRecord]) -> dict[str, str]:
    """Run hash -> strategy label: the reward name, plus `[k=v,...]` where that reward appears
    with more than one set of parameters (a sweep's cell names: `harness.overrides.cell_name`)."""
    variants: dict[str, set[str]] = defaultdict(set)
    for record in records:
        variants[record.reward].add(json.dumps(record.reward_params, sort_keys=True))
    return {r.hash: cell_name(r.reward, r.reward_params) if len(variants[r.reward]) > 1 else r.reward
            for r in records}


def _cells(records: list[RunRecord], labels: dict[str, str], metrics: dict[str, str],
           notes: list[str]) -> pd.DataFrame:
    """One row per task × strategy with its seed summary; refused and failed cells keep NaN numbers."""
    by_cell: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for record in records:
        by_cell[(record.task, labels[record.hash])].append(record)
    rows = []
    few_seeds: dict[int, list[str]] = defaultdict(list)  # seeds -> cells: one note per count, not per cell
    for (task, strategy), cell in sorted(by_cell.items()):
        metric = metrics[task]
        values = [r.test[metric] for r in cell if r.status == "completed"]
        statuses = Counter(r.status for r in cell)
        others = [r for r in cell if r.status != "completed"]
        summary = stats.seed_summary(values) if values else stats.SeedSummary(0, *[math.nan] * 4)
        status = "completed" if values else "/".join(sorted(statuses))
        rows.append({"task": task, "strategy": strategy, "metric": metric, "status": status,
                     "n": summary.n, "n_failed": statuses["failed"], "n_refused": statuses["refused"],
                     "mean": summary.mean, "std": summary.std, "ci_low": summary.ci_low,
                     "ci_high": summary.ci_high, "rank": math.nan,  # set from the bootstrap in `analyse`
                     "why": others[0].why if others else ""})
        if values and len(values) < MIN_SEEDS:
            few_seeds[len(values)].append(f"{task} / {strategy}")
        if values and others:
            notes.append(f"{task} / {strategy}: {status_words(statuses)} of {len(cell)} runs; the cell "
                         f"summarises the {len(values)} completed")
    for n, names in sorted(few_seeds.items()):
        where = "every cell" if len(names) == len(by_cell) else f"{len(names)} cell(s): {', '.join(names)}"
        notes.append(f"{n} seed(s), fewer than {MIN_SEEDS}, in {where}: spreads and confidence intervals "
                     "there are unreliable or missing")
    return pd.DataFrame(rows)


def status_words(statuses: Mapping[str, int]) -> str:
    """'1 failed and 2 refused'; empty when neither."""
    return " and ".join(f"{statuses[s]} {s}" for s in ("failed", "refused") if statuses[s])


def _test_fingerprint(record: RunRecord) -> str:
    references = json.dumps([ex["reference"] for ex in record.test_examples])
    return hashlib.sha256(references.encode()).hexdigest()


def statistics_of(record: RunRecord) -> list[dict]:
    """The per-example statistics of a run's test examples (what the task's `aggregate` reads)."""
    return [{k: v for k, v in ex.items() if k not in NOT_STATISTICS} for ex in record.test_examples]


def has_calibration(record: RunRecord) -> bool:
    """Whether a completed run stored calibration: the test metrics and their per-example statistics."""
    return (all(m in record.test for m in CALIBRATION) and bool(record.test_examples)
            and all("cal_n" in ex for ex in record.test_examples))


def calibration_applies(record: RunRecord) -> bool:
    """Whether the run's task measures calibration: its aggregate turns calibration statistics into
    ECE, NLL and Brier. Asked of the task's own aggregate (on the run's first example plus empty
    calibration statistics), so a record written before calibration was measured still says it."""
    if has_calibration(record):
        return True
    if not record.test_examples:
        return False
    probe = {**statistics_of(record)[0], "cal_n": 1, "cal_nll": 0.0, "cal_brier": 0.0, "cal_bins": {}}
    try:
        return set(CALIBRATION) <= set(get_task(record.task).aggregate([probe]))
    except Exception:  # an aggregate that cannot read the probe does not measure calibration
        return False


def _calibration_notes(groups: dict[tuple[str, str], list[RunRecord]], notes: list[str]) -> list[str]:
    """The tasks that measure calibration; a note on the completed records of those tasks that
    carry no calibration statistics (written before the runs measured it)."""
    calibrated, lacking = set(), Counter()
    for (task, _), runs in sorted(groups.items()):
        for record in runs:
            if calibration_applies(record):
                calibrated.add(task)
                lacking[task] += not has_calibration(record)
    total = sum(lacking.values())
    if total:
        where = ", ".join(f"{task}: {n}" for task, n in sorted(lacking.items()) if n)
        notes.append(f"no calibration statistics in {total} record(s) ({where}), written before runs measured "
                     "calibration: ECE, NLL and Brier are shown as — where no run of a cell has them, and "
                     "compared only between runs that have them")
    return sorted(calibrated)


def _task_runs(task: str, metric: str, groups: dict[tuple[str, str], list[RunRecord]], n_resamples: int,
               seed: int, notes: list[str]) -> dict[str, dict[str, stats.Runs]]:
    """metric -> strategy -> its runs' scores on the full test set and on each shared resample
    (each run's corpus metric recomputed with the task's `aggregate`), for the main metric and,
    from the runs that stored them, the calibration metrics."""
    cells = {s: runs for (t, s), runs in groups.items() if t == task}
    fingerprint = {r.hash: _test_fingerprint(r) for runs in cells.values() for r in runs}
    if not fingerprint:
        return {}
    common, _ = Counter(fingerprint.values()).most_common(1)[0]
    n_examples = len(next(r for runs in cells.values() for r in runs
                          if fingerprint[r.hash] == common).test_examples)
    if n_examples == 0:
        notes.append(f"{task}: the records hold no test examples; no significance tests or ranks")
        return {}
    indices = stats.resample_indices(n_examples, n_resamples, seed)
    aggregate = get_task(task).aggregate
    out: dict[str, dict[str, stats.Runs]] = defaultdict(dict)
    for strategy in ordered(cells):
        runs = cells[strategy]
        if any(fingerprint[r.hash] != common for r in runs):
            notes.append(f"{task} / {strategy}: scored on a different test set than the other strategies; "
                         "left out of the significance tests and ranks")
            continue
        resampled = [stats.resampled_metrics(statistics_of(r), aggregate,
                                             [metric, *(CALIBRATION if has_calibration(r) else ())], indices)
                     for r in runs]
        out[metric][strategy] = stats.Runs([r.test[metric] for r in runs], [x[metric] for x in resampled],
                                           _seed_ids(runs))
        for m in CALIBRATION:
            have = [(r, x) for r, x in zip(runs, resampled) if m in x]
            if have:
                out[m][strategy] = stats.Runs([r.test[m] for r, _ in have], [x[m] for _, x in have],
                                              _seed_ids([r for r, _ in have]))
    return dict(out)


def _seed_ids(runs: list[RunRecord]) -> tuple[int, ...]:
    """The runs' seeds, for the seed-paired test; none when a seed repeats (records mixed by `allow_mixed`)."""
    ids = tuple(r.seed for r in runs)
    return ids if len(set(ids)) == len(ids) else ()


_COMPARISON_COLUMNS = ["task", "metric", "main", "strategy", "baseline", "n", "n_baseline", "delta", "ci_low",
                       "ci_high", "se", "df", "p", "p_holm", "significant", "testable", "effect", "seed_sd", "p_run",
                       "n_paired", "delta_paired", "ci_low_paired", "ci_high_paired", "p_paired", "p_holm_paired",
                       "lower_is_better"]


def _comparisons(runs: dict[str, dict[str, dict[str, stats.Runs]]], groups: dict[tuple[str, str], list[RunRecord]],
                 metrics: dict[str, str]) -> pd.DataFrame:
    """Seed-aware tests on the same task: every strategy against `ce` on the main metric and on each
    calibration metric, and against each control present (main metric) the strategies it applies
    to. Holm-adjusted within each (task, metric, baseline) family of the comparisons that can be
    tested (both sides with at least `MIN_TEST_SEEDS` seeds). Beside each, the seed-paired test
    (`stats.seed_paired_test`), Holm-adjusted within the same family: a sensitivity analysis that
    the stars, ranks and wins do not use."""
    applies = {c.name: c.applies for c in CONTROLS}
    rows = []
    for task, by_metric in runs.items():
        for metric, by_strategy in by_metric.items():
            main = metric == metrics[task]
            for baseline in (BASELINE, *(CONTROL_NAMES if main else ())):
                if baseline not in by_strategy:
                    continue
                family = [s for s in by_strategy if s != baseline
                          and (baseline == BASELINE or applies[baseline](s, groups[(task, s)]))]
                tests = {s: stats.seed_aware_test(by_strategy[s], by_strategy[baseline]) for s in family}
                adjusted = _holm_adjusted(tests)
                adjusted_paired = _holm_adjusted({s: test.paired for s, test in tests.items()})
                for strategy in family:
                    test, a, b = tests[strategy], by_strategy[strategy], by_strategy[baseline]
                    p_holm = float(adjusted.get(strategy, math.nan))
                    rows.append({"task": task, "metric": metric, "main": main, "strategy": strategy,
                                 "baseline": baseline, "n": a.seeds, "n_baseline": b.seeds, "delta": test.delta,
                                 "ci_low": test.ci_low, "ci_high": test.ci_high, "se": test.se, "df": test.df,
                                 "p": test.p_value, "p_holm": p_holm, "significant": bool(p_holm < ALPHA),
                                 "testable": strategy in adjusted, "effect": test.effect, "seed_sd": _pooled_sd(a, b),
                                 "p_run": test.p_run,
                                 **_paired_columns(a, b, test.paired, adjusted_paired.get(strategy)),
                                 "lower_is_better": metric in CALIBRATION})
    return pd.DataFrame(rows, columns=_COMPARISON_COLUMNS)


def _holm_adjusted(tests: Mapping[str, stats.Comparison | None]) -> dict[str, float]:
    """Holm-adjusted p-values of one family, by strategy, over the tests that have a p-value (both
    sides with enough seeds); the others are left out."""
    testable = [s for s, test in tests.items() if test is not None and not math.isnan(test.p_value)]
    return dict(zip(testable, (float(p) for p in stats.holm([tests[s].p_value for s in testable]))))


def _paired_columns(a: stats.Runs, b: stats.Runs, test: stats.Comparison | None,
                    p_holm: float | None) -> dict[str, float]:
    """The seed-paired sensitivity test's columns: the seeds both sides ran, and NaN numbers where
    they share fewer than two."""
    n = len(set(a.ids) & set(b.ids))
    if test is None:
        return {"n_paired": n, **dict.fromkeys(("delta_paired", "ci_low_paired", "ci_high_paired", "p_paired",
                                               "p_holm_paired"), math.nan)}
    return {"n_paired": n, "delta_paired": test.delta, "ci_low_paired": test.ci_low, "ci_high_paired": test.ci_high,
            "p_paired": test.p_value, "p_holm_paired": math.nan if p_holm is None else float(p_holm)}


def _pooled_sd(a: stats.Runs, b: stats.Runs) -> float:
    """√(((k−1)s²_a + (m−1)s²_b)/(k+m−2)): the seed-to-seed spread g divides by; NaN with two runs in all."""
    dof = a.seeds + b.seeds - 2
    squares = sum((r.seeds - 1) * float(np.var(r.scores, ddof=1)) for r in (a, b) if r.seeds > 1)
    return math.sqrt(squares / dof) if dof > 0 else math.nan


def _ranks(by_strategy: dict[str, stats.Runs], comparisons: pd.DataFrame, task: str, metric: str) -> dict[str, int]:
    """Tied ranks of the strategies with at least `MIN_TEST_SEEDS` seeds (`stats.tied_ranks`). A pair
    with a comparison shown in the leaderboard (against ce or a control) is decided by that
    comparison; every other pair by the same seed-aware test, Holm-adjusted over those pairs."""
    names = [s for s, runs in by_strategy.items() if runs.seeds >= MIN_TEST_SEEDS]
    index = {s: i for i, s in enumerate(names)}
    significant = np.zeros((len(names), len(names)), dtype=bool)
    decided = set()
    shown = comparisons[(comparisons["task"] == task) & (comparisons["metric"] == metric) & comparisons["testable"]]
    for row in shown.itertuples():
        if row.strategy in index and row.baseline in index:
            i, j = index[row.strategy], index[row.baseline]
            significant[i, j] = significant[j, i] = row.significant
            decided.add(frozenset((i, j)))
    others = [(i, j) for i in range(len(names)) for j in range(i) if frozenset((i, j)) not in decided]
    p = [float(stats.seed_aware(by_strategy[names[i]].scores, by_strategy[names[i]].resampled,
                                by_strategy[names[j]].scores, by_strategy[names[j]].resampled)["p"])
         for i, j in others]
    for (i, j), q in zip(others, stats.holm(p) if p else []):
        significant[i, j] = significant[j, i] = q < ALPHA
    ranks = stats.tied_ranks([by_strategy[s].mean for s in names], significant)
    return {s: int(r) for s, r in zip(names, ranks)}


def _one_seed_notes(cells: pd.DataFrame, notes: list[str]) -> None:
    """What cannot be claimed where a cell has a single completed seed."""
    single = cells[cells["n"] == 1]
    if not len(single):
        return
    names = [f"{t} / {s}" for t, s in zip(single["task"], single["strategy"])]
    where = "every cell" if len(single) == (cells["n"] > 0).sum() else f"{len(names)} cell(s): {', '.join(names)}"
    notes.append(f"one seed in {where}: nothing is known there about run-to-run variance, so no significance can "
                 "be claimed about the strategy, only about its single run (p_run in comparisons.csv: the "
                 "test-set bootstrap, which says how that run differs, not the strategy); no star, arrow or rank")


def _overall(cells: pd.DataFrame, comparisons: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, across tasks: the mean tied rank over the tasks with any ranked strategy, a
    cell without a rank there (not run, refused, failed, one seed) counting as last (1 + the
    number of strategies ranked on the task); wins, ties and losses against `ce` by the seed-aware
    test; and the mean standardised effect against `ce` (Hedges' g over seeds) over the tasks where
    it is defined. Rank, counts and g are scale-free, and under the null g and wins − losses are
    centred on zero whatever a strategy's noise."""
    ranked = cells.dropna(subset=["rank"])
    tasks = sorted(ranked["task"].unique())
    last = {task: 1 + int((ranked["task"] == task).sum()) for task in tasks}
    rank = ranked.set_index(["task", "strategy"])["rank"]
    vs_ce = comparisons[comparisons["main"] & (comparisons["baseline"] == BASELINE) & comparisons["testable"]]
    rows = []
    for strategy in ordered(cells["strategy"]):
        ranks = [rank.get((task, strategy), last[task]) for task in tasks]
        own = vs_ce[vs_ce["strategy"] == strategy]
        wins = int((own["significant"] & (own["delta"] > 0)).sum())
        losses = int((own["significant"] & (own["delta"] < 0)).sum())
        effects = own["effect"].dropna()
        rows.append({"strategy": strategy, "mean_rank": float(np.mean(ranks)) if ranks else math.nan,
                     "tasks_ranked": sum((task, strategy) in rank.index for task in tasks), "tasks_scored": len(tasks),
                     "wins": wins, "ties": len(own) - wins - losses, "losses": losses, "tasks_tested": len(own),
                     "mean_effect": float(effects.mean()) if len(effects) else math.nan, "tasks_effect": len(effects)})
    columns = ["strategy", "mean_rank", "tasks_ranked", "tasks_scored", "wins", "ties", "losses", "tasks_tested",
               "mean_effect", "tasks_effect"]
    overall = pd.DataFrame(rows, columns=columns)
    overall["_net"] = overall["wins"] - overall["losses"]
    overall = overall.sort_values(["mean_rank", "_net", "mean_effect"], ascending=[True, False, False],
                                  na_position="last", kind="stable", ignore_index=True)
    return overall.drop(columns="_net")


def _test_means(groups: dict[tuple[str, str], list[RunRecord]]) -> pd.DataFrame:
    """Every test metric of every completed cell: mean and spread over the runs that have it."""
    rows = []
    for (task, strategy), runs in sorted(groups.items()):
        for metric in dict.fromkeys(m for r in runs for m in r.test):
            values = [r.test[metric] for r in runs if metric in r.test]
            rows.append({"task": task, "strategy": strategy, "metric": metric, "mean": float(np.mean(values)),
                         "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan, "n": len(values)})
    return pd.DataFrame(rows, columns=["task", "strategy", "metric", "mean", "std", "n"])


def repetition_rate(text: str, n: int = REPETITION_N) -> float:
    """Share of an output's word n-grams that repeat an earlier n-gram of the same output
    (1 − distinct/total); NaN for an output shorter than n words."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else math.nan


def run_guards(record: RunRecord) -> dict[str, float]:
    """Guard metrics of one run: for generated text, mean length in words, mean repetition rate and
    the share of empty outputs on the test set; for sampling strategies, the final evaluation's
    training means of the sampling terms (KL to the reference, entropy, true and proxy reward, clip
    fraction, reward-model accuracy) and how much the optimised reward rose over training."""
    guards = {"mean_length": math.nan, "repetition": math.nan, "empty_share": math.nan}
    predictions = [ex["prediction"] for ex in record.test_examples]
    length = mean_words(predictions)
    if length is not None:
        repetition = [r for r in map(repetition_rate, predictions) if not math.isnan(r)]
        guards = {"mean_length": length, "repetition": float(np.mean(repetition)) if repetition else math.nan,
                  "empty_share": float(np.mean([not p.strip() for p in predictions]))}
    final = record.history[-1]["train"] if record.history else {}
    return {**guards, **{term: final.get(term, math.nan) for term in SAMPLING_TERMS},
            "reward_rise": reward_rise(record)}


def optimised_reward(strategy: str) -> str:
    """The logged term a strategy optimises ("reward" unless its class says otherwise, e.g. rlhf's proxy)."""
    cls = strategy_class(strategy)
    return cls.optimised_reward if cls is not None else "reward"


def reward_rise(record: RunRecord) -> float:
    """Mean optimised reward over the last quarter of the logged training steps minus the first
    quarter's; NaN with fewer than eight logged steps (two per quarter) or none logging it."""
    term = optimised_reward(record.reward)
    values = [s[term] for s in record.steps if term in s]
    quarter = len(values) // 4
    if quarter < 2:
        return math.nan
    return float(np.mean(values[-quarter:]) - np.mean(values[:quarter]))


def evaluations(groups: dict[tuple[str, str], list[RunRecord]]) -> pd.DataFrame:
    """One row per evaluation of every sampling run: the validation score and output length, and the
    means of the sampling terms over the training steps since the previous evaluation."""
    rows = [{"task": task, "strategy": strategy, "seed": r.seed, "epoch": h["epoch"],
             "validation": h["validation"].get(r.main_metric, math.nan),
             "output_length": h.get("validation_length") or math.nan,
             **{term: h["train"].get(term, math.nan) for term in SAMPLING_TERMS}}
            for (task, strategy), runs in sorted(groups.items()) if is_sampling(strategy)
            for r in runs for h in r.history]
    return pd.DataFrame(rows, columns=["task", "strategy", "seed", "epoch", "validation", "output_length",
                                       *SAMPLING_TERMS])


def _guards(groups: dict[tuple[str, str], list[RunRecord]], test_means: pd.DataFrame) -> pd.DataFrame:
    """Guard metrics per cell (means over seeds), with the calibration metrics (means over the runs
    that stored them)."""
    means = test_means.set_index(["task", "strategy", "metric"])["mean"]
    rows = [{"task": task, "strategy": strategy, **pd.DataFrame([run_guards(r) for r in runs]).mean().to_dict(),
             **{m: means.get((task, strategy, m), math.nan) for m in CALIBRATION}}
            for (task, strategy), runs in sorted(groups.items())]
    return pd.DataFrame(rows, columns=["task", "strategy", "mean_length", "repetition", "empty_share",
                                       *SAMPLING_TERMS, "reward_rise", *CALIBRATION])


def _over_optimised(guards: pd.DataFrame, comparisons: pd.DataFrame, evals: pd.DataFrame, metrics: dict[str, str],
                    groups: dict[tuple[str, str], list[RunRecord]]) -> pd.DataFrame:
    """Sampling cells whose optimised reward rose over training while the score fell: the test
    metric below `ce`'s (the checkpoint they started from; seed-aware Δ) or, for a cell not started
    from a checkpoint, the validation score at its last evaluation below its first (means over seeds)."""
    vs_ce = comparisons[comparisons["main"] & (comparisons["baseline"] == BASELINE)].set_index(["task", "strategy"])
    rows = []
    for g in guards[guards["reward_rise"] > 0].itertuples():
        if (g.task, g.strategy) in vs_ce.index and started_from_checkpoint(groups[(g.task, g.strategy)]):
            c = vs_ce.loc[(g.task, g.strategy)]
            fall, against, significant = c["delta"], "test vs ce (its start)", bool(c["significant"])
        else:
            e = evals[(evals["task"] == g.task) & (evals["strategy"] == g.strategy)].groupby("epoch")["validation"].mean()
            if len(e) < 2:
                continue
            fall, against, significant = e.iloc[-1] - e.iloc[0], "validation, last vs first evaluation", False
        if fall < 0:
            rows.append({"task": g.task, "strategy": g.strategy, "term": optimised_reward(g.strategy),
                         "reward_rise": g.reward_rise, "metric": metrics[g.task], "metric_change": fall,
                         "against": against, "significant": significant})
    return pd.DataFrame(rows, columns=["task", "strategy", "term", "reward_rise", "metric", "metric_change", "against",
                                       "significant"])


def hardware(record: RunRecord) -> str:
    """"GPU (name)" for a run that used CUDA, else "CPU"."""
    on_gpu = record.timing.get("peak_gpu_memory_bytes") is not None
    return f"GPU ({record.environment.get('device', '?')})" if on_gpu else "CPU"


def _cost(groups: dict[tuple[str, str], list[RunRecord]], cells: pd.DataFrame,
          by_hash: dict[str, RunRecord]) -> pd.DataFrame:
    """Device seconds per run (the whole run: set-up, training, evaluation), with the run it
    started from (`init_from`, the ce checkpoint) added, training samples/s, training seconds per
    epoch and their ratio to `ce`'s, the strategy's one-off `start` (preference sets, reward
    models), and the gain over `ce` per extra device-hour spent beyond `ce`."""
    rows = []
    for (task, strategy), runs in sorted(groups.items()):
        own = [r.timing["total_seconds"] for r in runs]
        start = [by_hash[r.init_from].timing["total_seconds"]
                 if r.init_from in by_hash and by_hash[r.init_from].status == "completed" else 0.0
                 for r in runs]
        throughput = [r.timing.get("train_samples_per_second") for r in runs]
        epoch = [r.timing["train_seconds"] / len(r.history) for r in runs if r.history]
        set_up = [r.timing["start_seconds"] for r in runs if r.timing.get("start_seconds") is not None]
        rows.append({"task": task, "strategy": strategy,
                     "hardware": ", ".join(sorted({hardware(r) for r in runs})),
                     "seconds": float(np.mean(own)), "seconds_with_start": float(np.mean(np.add(own, start))),
                     "samples_per_second": float(np.mean([t for t in throughput if t is not None] or [math.nan])),
                     "epoch_seconds": float(np.mean(epoch)) if epoch else math.nan,
                     "start_seconds": float(np.mean(set_up)) if set_up else math.nan})
    cost = pd.DataFrame(rows, columns=["task", "strategy", "hardware", "seconds", "seconds_with_start",
                                       "samples_per_second", "epoch_seconds", "start_seconds"])
    keyed = cells.set_index(["task", "strategy"])["mean"]
    base = cost[cost["strategy"] == BASELINE].set_index("task")
    cost["score"] = [keyed[(t, s)] for t, s in zip(cost["task"], cost["strategy"])]
    cost["delta"] = [row.score - keyed[(row.task, BASELINE)] if row.task in base.index else math.nan
                     for row in cost.itertuples()]
    # Training time of an epoch over the same rows relative to ce's (BENCHMARKS.md bounds the sampling
    # strategies'): the ratio of training samples/s. A strategy that starts from ce's checkpoint is
    # measured against its control (`compared_with`, ce_continued: ce's epoch from the same weights
    # on the same rows) where that ran, so a short second phase is not set against ce's longer,
    # better amortised first one. Only meaningful on the same hardware (the hardware column says).
    rate = cost.set_index(["task", "strategy"])["samples_per_second"]

    def ce_rate(task: str, strategy: str) -> float:
        control = getattr(strategy_class(strategy), "compared_with", None)
        return rate.get((task, control), rate.get((task, BASELINE), math.nan))

    cost["epoch_vs_ce"] = [ce_rate(row.task, row.strategy) / row.samples_per_second if row.samples_per_second > 0
                           else math.nan for row in cost.itertuples()]
    extra_hours = [(row.seconds_with_start - base.loc[row.task, "seconds"]) / 3600 if row.task in base.index
                   else math.nan for row in cost.itertuples()]
    cost["extra_hours"] = extra_hours
    cost["delta_per_extra_hour"] = [d / h if h > 0 else math.nan for d, h in zip(cost["delta"], extra_hours)]
    return cost


def _runs(records: list[RunRecord], labels: dict[str, str], metrics: dict[str, str]) -> pd.DataFrame:
    rows = []
    for r in records:
        completed = r.status == "completed"
        rows.append({"task": r.task, "strategy": labels[r.hash], "seed": r.seed, "status": r.status,
                     "hash": r.hash, "metric": metrics[r.task],
                     "score": r.test[metrics[r.task]] if completed else math.nan,
                     "seconds": r.timing["total_seconds"] if completed else math.nan,
                     "why": r.why})
    return pd.DataFrame(rows).sort_values(["task", "strategy", "seed"], ignore_index=True)


def _check_cells(groups: dict[tuple[str, str], list[RunRecord]], notes: list[str], allow_mixed: bool) -> None:
    """A cell's runs must differ only in the seed (and so in the parent run, whose seed it is):
    settings, data (test and training checksums, or Hub id), model and harness version change the
    score, so pooling runs that differ in them would report a mixture as one configuration. An error
    naming what differs, or, with `allow_mixed`, a note."""
    for (task, strategy), runs in sorted(groups.items()):
        differing = _differing(runs)
        seeds = Counter(r.seed for r in runs)
        twice = sorted(seed for seed, n in seeds.items() if n > 1)  # e.g. a child stored before and after
        if twice:  # its parent joined its identity: same seed, two hashes
            differing.append(f"{len(twice)} seed(s) run twice: {', '.join(map(str, twice))}")
        if not differing:
            continue
        what = f"{task} / {strategy}: its runs differ in more than the seed ({', '.join(differing)})"
        if not allow_mixed:
            raise ReportError(f"{what}, so the cell would mix configurations. Report the configurations from "
                              "separate stores, or pass --allow-mixed to pool them anyway (the report then says so)")
        notes.append(f"{what}; the cell mixes configurations (--allow-mixed)")


def _differing(runs: list[RunRecord]) -> list[str]:
    """The identity keys (`settings.lr`, `data`, `model`, ...) on which `runs` disagree, seed and parent aside."""
    def flat(r: RunRecord) -> dict[str, str]:
        out = {"model": json.dumps(r.model)}
        for key, value in r.config.items():
            if key in ("seed", "parent"):
                continue
            items = value.items() if key == "settings" and isinstance(value, dict) else [(None, value)]
            for sub, v in items:
                if sub and v is None:  # an unset setting: older records spell it out, newer leave it out
                    continue
                out[f"{key}.{sub}" if sub else key] = json.dumps(v, sort_keys=True, default=str)
        return out

    flats = [flat(r) for r in runs]
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({f.get(k) for f in flats}) > 1]
