"""The report's statistics as pure functions of numbers (no records, no files, no formatting).

- `seed_summary`: mean, sample standard deviation and Student-t confidence interval over seeds.
- `resample_indices`, `resampled_scores`, `paired_bootstrap`: the paired bootstrap over test
  examples (Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation"): every
  system is rescored on the *same* resamples of the test set, the corpus metric recomputed from
  per-example sufficient statistics on each resample (so BLEU and F1 are resampled as corpus
  metrics, not as means of sentence scores).
- `holm`: Holm's (1979) step-down adjustment of p-values for a family of comparisons.
- `tied_ranks`: ranks in which differences that are not significant are ties.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import scipy.stats

Aggregate = Callable[[list[dict[str, Any]]], dict[str, float]]

# `resampled_scores` checks a shortcut against the aggregate on the full set, on this many of the
# resamples, and on as many random sets of three and of two examples: a shortcut that is wrong in
# general but right by coincidence on large sets (say, summed class labels that happen to balance)
# is caught on small ones.
_FAST_PATH_CHECKS = 3
_SMALL_CHECKS = 16
# Rows of the [resamples, examples] count matrix built at once (bounds memory on big test sets).
_CHUNK = 256


@dataclass(frozen=True)
class SeedSummary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for one seed
    ci_low: float  # Student-t confidence interval of the mean; NaN for one seed
    ci_high: float


def seed_summary(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """mean ± t_{(1+c)/2, n−1}·s/√n: the t interval, because n (seeds) is small."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("seed_summary needs at least one value")
    mean = float(x.mean())
    if x.size < 2:
        return SeedSummary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(scipy.stats.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return SeedSummary(int(x.size), mean, std, mean - half, mean + half)


def resample_indices(n_examples: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n_examples] example indices drawn with replacement.

    Drawn once per test set and shared by every system scored on it: that sharing is what makes
    the bootstrap paired.
    """
    return np.random.default_rng(seed).integers(0, n_examples, size=(n_resamples, n_examples))


def resampled_scores(per_example: list[dict[str, Any]], aggregate: Aggregate, metric: str,
                     indices: np.ndarray) -> np.ndarray:
    """[n_resamples] `aggregate(resample)[metric]` for every row of `indices`.

    By definition this is the aggregate of each resampled list of examples, a pass over the test
    set per resample. Two shortcuts give the same numbers far faster and are used only where they
    reproduce the aggregate on the full set, the first few resamples and small random sets:
    - the aggregate is a function of the column sums of the flattened statistics (entity counts,
      BLEU n-gram counts): each resample's sums come from one matrix product, and the aggregate
      runs on a single pseudo-example holding them;
    - the metric is the mean of its value on each example alone (accuracy, ROUGE): each
      resample's score is a weighted mean of the per-example values.
    """
    n = len(per_example)
    if n == 0:
        raise ValueError("an empty test set cannot be resampled")
    small = np.random.default_rng(0).integers(0, n, size=(_SMALL_CHECKS, 3))
    checks = [np.arange(n), *indices[:_FAST_PATH_CHECKS], *small, *small[:, :2]]
    expected = [aggregate([per_example[i] for i in subset])[metric] for subset in checks]

    encoding = _sum_encoding(per_example)
    if encoding is not None:
        matrix, rebuild = encoding
        if all(math.isclose(aggregate([rebuild(matrix[s].sum(0))])[metric], e, rel_tol=1e-9, abs_tol=1e-9)
               for s, e in zip(checks, expected)):
            return np.array([aggregate([rebuild(totals)])[metric]
                             for counts in _count_blocks(indices, n) for totals in counts @ matrix])

    values = np.array([aggregate([row])[metric] for row in per_example], dtype=float)
    if all(math.isclose(values[s].mean(), e, rel_tol=1e-9, abs_tol=1e-9) for s, e in zip(checks, expected)):
        return np.concatenate([counts @ values / n for counts in _count_blocks(indices, n)])

    return np.array([aggregate([per_example[i] for i in row])[metric] for row in indices], dtype=float)


def _count_blocks(indices: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """[rows, n] how often each example occurs in each resample, a block of resamples at a time."""
    for start in range(0, len(indices), _CHUNK):
        block = indices[start:start + _CHUNK]
        flat = (np.arange(len(block))[:, None] * n + block).ravel()
        yield np.bincount(flat, minlength=block.size).reshape(block.shape).astype(float)


def _leaves(value: Any) -> list[float] | None:
    """The numbers in a (nested) statistic in a fixed order; None if it holds anything else."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        items: Any = [value[k] for k in sorted(value)]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    flat: list[float] = []
    for item in items:
        leaves = _leaves(item)
        if leaves is None:
            return None
        flat.extend(leaves)
    return flat


def _rebuild(template: Any, values: Iterator[float]) -> Any:
    """`template`'s structure filled from `values` in `_leaves` order; integer leaves stay ints."""
    if isinstance(template, dict):
        return {k: _rebuild(template[k], values) for k in sorted(template)}
    if isinstance(template, (list, tuple)):
        return [_rebuild(v, values) for v in template]
    value = float(next(values))
    return int(round(value)) if isinstance(template, int) else value


def _sum_encoding(per_example: list[dict[str, Any]]
                  ) -> tuple[np.ndarray, Callable[[np.ndarray], dict[str, Any]]] | None:
    """(the [examples, leaves] statistics matrix, column sums -> pseudo-example), or None where the
    statistics are not all numbers of one shape."""
    template = per_example[0] if per_example else {}
    if not per_example or any(row.keys() != template.keys() for row in per_example):
        return None
    rows = [_leaves(row) for row in per_example]
    if any(r is None or len(r) != len(rows[0]) for r in rows):
        return None

    def rebuild(totals: np.ndarray) -> dict[str, Any]:
        return _rebuild(template, iter(totals))

    return np.asarray(rows, dtype=float), rebuild


@dataclass(frozen=True)
class Comparison:
    delta: float  # observed system − baseline
    ci_low: float  # percentile bootstrap interval of the difference
    ci_high: float
    p_value: float  # two-sided, unadjusted


def paired_bootstrap(system: np.ndarray, baseline: np.ndarray, observed_delta: float,
                     confidence: float = 0.95) -> Comparison:
    """Two-sided paired bootstrap test of `observed_delta` from scores on shared resamples.

    δ*_b = system_b − baseline_b. The null distribution is δ* shifted to mean zero (Efron &
    Tibshirani 1993, §16.4), so p = (1 + #{b : |δ*_b − mean(δ*)| ≥ |δ|}) / (B + 1); the +1 keeps
    the test valid with finitely many resamples (so p ≥ 1/(B+1)), as in sacreBLEU and MultEval.
    The interval is the percentile interval of δ*.
    """
    diffs = np.asarray(system, dtype=float) - np.asarray(baseline, dtype=float)
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    extreme = np.count_nonzero(np.abs(diffs - diffs.mean()) >= abs(observed_delta))
    return Comparison(float(observed_delta), float(low), float(high), (1 + extreme) / (diffs.size + 1))


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values: sorted ascending, p_(i)·(m − i + 1), made monotone, capped at 1.

    Rejecting where adjusted p < α controls the family-wise error rate at α for any dependence.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = (p.size - np.arange(p.size)) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


def tied_ranks(means: Sequence[float], p_values: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Competition ranks (1, 1, 3, ...) in which systems not significantly below a leader tie with it.

    Systems are sorted by mean, best first. The best unranked system leads a group; its p-values
    against every system below it are Holm-adjusted together, and the systems after it, in order,
    join its group until the first one that is significantly worse (adjusted p < α). The group
    shares the next rank; the first system left out leads the next group. Ranks therefore never
    contradict the order of the means. `p_values[i, j]` is the two-sided p-value of i vs j.
    """
    order = [int(i) for i in np.argsort(-np.asarray(means, dtype=float), kind="stable")]
    ranks = np.zeros(len(order), dtype=int)
    position = 1
    while order:
        leader, rest = order[0], order[1:]
        adjusted = holm([p_values[leader, j] for j in rest]) if rest else np.array([])
        significant = [q < alpha for q in adjusted]
        size = 1 + (significant.index(True) if True in significant else len(rest))
        ranks[order[:size]] = position
        position += size
        order = order[size:]
    return ranks
