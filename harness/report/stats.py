"""The report's statistics as pure functions of numbers (no records, no files, no formatting).

- `seed_summary`: mean, sample standard deviation and Student-t confidence interval over seeds.
- `resample_indices`, `resampled_metrics`, `paired_bootstrap`: the paired bootstrap over test
  examples (Koehn 2004, "Statistical Significance Tests for Machine Translation Evaluation"): every
  system is rescored on the *same* resamples of the test set, the corpus metric recomputed from
  per-example sufficient statistics on each resample (so BLEU and F1 are resampled as corpus
  metrics, not as means of sentence scores). Alone it covers test-set sampling only.
- `Runs`, `seed_aware`, `seed_aware_test`: the test the report uses, covering both sources of
  variance of a difference between strategies: run to run (seeds) and test-set sampling.
- `seed_paired`, `seed_paired_test`: the same test when seed s of both strategies shares what a
  seed fixes (e.g. the `ce` checkpoint both start from): run-to-run variance of the per-seed
  differences. Shown beside the report's test as a sensitivity analysis, not used for its stars.
- `standardised_effect`: Hedges' g over seeds, the scale-free effect the overall table averages.
- `holm`: Holm's (1979) step-down adjustment of p-values for a family of comparisons.
- `tied_ranks`: ranks in which systems share a rank only when no two of them differ significantly.
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
    """[n_resamples] `aggregate(resample)[metric]` for every row of `indices` (`resampled_metrics`
    for one metric)."""
    return resampled_metrics(per_example, aggregate, [metric], indices)[metric]


def resampled_metrics(per_example: list[dict[str, Any]], aggregate: Aggregate, metrics: Sequence[str],
                      indices: np.ndarray) -> dict[str, np.ndarray]:
    """metric -> [n_resamples] `aggregate(resample)[metric]` for every row of `indices`.

    By definition this is the aggregate of each resampled list of examples, a pass over the test
    set per resample. Two shortcuts give the same numbers far faster and are used, metric by
    metric, only where they reproduce the aggregate on the full set, the first few resamples and
    small random sets:
    - the aggregate is a function of the column sums of the flattened statistics (entity counts,
      BLEU n-gram counts, calibration bins; a key an example lacks counts as zeros, as an
      unoccupied calibration bin does): each resample's sums come from one matrix product, and the
      aggregate runs on a single pseudo-example holding them;
    - the metric is the mean of its value on each example alone (accuracy, ROUGE): each
      resample's score is a weighted mean of the per-example values.
    """
    n = len(per_example)
    if n == 0:
        raise ValueError("an empty test set cannot be resampled")
    small = np.random.default_rng(0).integers(0, n, size=(_SMALL_CHECKS, 3))
    checks = [np.arange(n), *indices[:_FAST_PATH_CHECKS], *small, *small[:, :2]]
    expected = [aggregate([per_example[i] for i in subset]) for subset in checks]
    todo = list(dict.fromkeys(metrics))
    out: dict[str, np.ndarray] = {}

    def agrees(metric: str, got: Iterator[float]) -> bool:
        return all(math.isclose(g, e[metric], rel_tol=1e-9, abs_tol=1e-9) for g, e in zip(got, expected))

    encoding = _sum_encoding(per_example)
    if encoding is not None:
        matrix, rebuild = encoding
        try:
            rebuilt = [aggregate([rebuild(matrix[s].sum(0))]) for s in checks]
        except Exception:  # the aggregate cannot read a pseudo-example: not a function of the sums
            rebuilt = [{} for _ in checks]
        summed = [m for m in todo if all(m in r for r in rebuilt) and agrees(m, (r[m] for r in rebuilt))]
        if summed:
            values = [aggregate([rebuild(totals)]) for counts in _count_blocks(indices, n) for totals in counts @ matrix]
            out.update({m: np.array([v[m] for v in values], dtype=float) for m in summed})
            todo = [m for m in todo if m not in summed]

    for metric in list(todo):
        values = np.array([aggregate([row])[metric] for row in per_example], dtype=float)
        if agrees(metric, (values[s].mean() for s in checks)):
            out[metric] = np.concatenate([counts @ values / n for counts in _count_blocks(indices, n)])
            todo.remove(metric)

    if todo:
        values = [aggregate([per_example[i] for i in row]) for row in indices]
        out.update({m: np.array([v[m] for v in values], dtype=float) for m in todo})
    return {m: out[m] for m in dict.fromkeys(metrics)}


def _count_blocks(indices: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """[rows, n] how often each example occurs in each resample, a block of resamples at a time."""
    for start in range(0, len(indices), _CHUNK):
        block = indices[start:start + _CHUNK]
        flat = (np.arange(len(block))[:, None] * n + block).ravel()
        yield np.bincount(flat, minlength=block.size).reshape(block.shape).astype(float)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _union(a: Any, b: Any) -> Any:
    """A template with every key of `a` and of `b` (nested), or None where their shapes differ; a
    leaf is an int only where it is one in both."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _union(a[key], value) if key in a else _union(value, value)
            if out[key] is None:
                return None
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        items = [_union(x, y) for x, y in zip(a, b)]
        return None if any(item is None for item in items) else items
    if _is_number(a) and _is_number(b):
        return 0 if isinstance(a, int) and isinstance(b, int) else 0.0
    return None


def _leaves(value: Any, template: Any) -> list[float] | None:
    """The numbers of a (nested) statistic in the template's order, zeros for what it lacks; None
    if it holds anything the template does not."""
    if isinstance(template, dict):
        if value is None:
            value = {}
        if not isinstance(value, dict) or not set(value) <= set(template):
            return None
        parts = [_leaves(value.get(k), template[k]) for k in sorted(template)]
    elif isinstance(template, list):
        if value is None:
            value = [None] * len(template)
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            return None
        parts = [_leaves(v, t) for v, t in zip(value, template)]
    else:
        return [0.0] if value is None else [float(value)] if _is_number(value) else None
    flat: list[float] = []
    for part in parts:
        if part is None:
            return None
        flat.extend(part)
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
    statistics are not all numbers of one nested shape (keys may be missing: they count as zeros)."""
    if not per_example:
        return None
    template: Any = {}
    for row in per_example:
        template = _union(template, row)
        if template is None:
            return None
    rows = [_leaves(row, template) for row in per_example]
    if any(r is None for r in rows):
        return None

    def rebuild(totals: np.ndarray) -> dict[str, Any]:
        return _rebuild(template, iter(totals))

    return np.asarray(rows, dtype=float), rebuild


@dataclass(frozen=True)
class Comparison:
    delta: float  # observed system − baseline (difference of the seed means)
    ci_low: float  # interval of the difference
    ci_high: float
    p_value: float  # two-sided, unadjusted; NaN where no test is possible (a side with one seed)
    se: float = math.nan  # standard error of delta (seed-aware test)
    df: float = math.nan  # its Welch–Satterthwaite degrees of freedom
    seed_var: float = math.nan  # the run-to-run part of se²
    example_var: float = math.nan  # the test-set part of se²
    effect: float = math.nan  # standardised effect (Hedges' g over seeds)
    p_run: float = math.nan  # the test-set-only paired bootstrap of the seed means: about these runs
    paired: Comparison | None = None  # `seed_paired_test` on the seeds both ran (None: fewer than two)


def paired_bootstrap(system: np.ndarray, baseline: np.ndarray, observed_delta: float,
                     confidence: float = 0.95) -> Comparison:
    """Two-sided paired bootstrap test of `observed_delta` from scores on shared resamples.

    δ*_b = system_b − baseline_b. The null distribution is δ* shifted to mean zero (Efron &
    Tibshirani 1993, §16.4), so p = (1 + #{b : |δ*_b − mean(δ*)| ≥ |δ|}) / (B + 1); the +1 keeps
    the test valid with finitely many resamples (so p ≥ 1/(B+1)), as in sacreBLEU and MultEval.
    The interval is the percentile interval of δ*.

    This covers test-set sampling only: what it says is about these particular runs, not about the
    strategies that produced them (`seed_aware_test` is the test about strategies).
    """
    diffs = np.asarray(system, dtype=float) - np.asarray(baseline, dtype=float)
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    extreme = np.count_nonzero(np.abs(diffs - diffs.mean()) >= abs(observed_delta))
    p = (1 + int(extreme)) / (diffs.size + 1)
    return Comparison(float(observed_delta), float(low), float(high), p, p_run=p)


@dataclass(frozen=True)
class Runs:
    """One strategy's runs (one per seed) on one test set: each run's corpus metric on the full
    test set, and on every shared resample of it (`resampled_metrics` with the same indices for
    every strategy of the task)."""
    scores: np.ndarray  # [seeds]
    resampled: np.ndarray  # [seeds, resamples]
    ids: tuple[int, ...] = ()  # the seed of each run, for `seed_paired_test`; empty: not known

    def __post_init__(self) -> None:
        scores, resampled = np.asarray(self.scores, dtype=float), np.asarray(self.resampled, dtype=float)
        if scores.ndim != 1 or resampled.ndim != 2 or resampled.shape[0] != scores.size or not scores.size:
            raise ValueError(f"Runs needs scores [seeds] and resampled [seeds, resamples]; got {scores.shape} "
                             f"and {resampled.shape}")
        if self.ids and (len(self.ids) != scores.size or len(set(self.ids)) != len(self.ids)):
            raise ValueError(f"Runs needs one distinct seed id per run; got {self.ids} for {scores.size} runs")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "resampled", resampled)
        object.__setattr__(self, "ids", tuple(int(i) for i in self.ids))

    def only(self, ids: Sequence[int]) -> Runs:
        """These runs restricted to the seeds `ids`, in that order."""
        rows = [self.ids.index(i) for i in ids]
        return Runs(self.scores[rows], self.resampled[rows], tuple(ids))

    @property
    def seeds(self) -> int:
        return int(self.scores.size)

    @property
    def mean(self) -> float:
        return float(self.scores.mean())


def seed_aware(system_scores: np.ndarray, system_resampled: np.ndarray, baseline_scores: np.ndarray,
               baseline_resampled: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """The seed-aware paired test, on arrays with any leading axes (many comparisons at once):
    scores [..., k] and resampled [..., k, B] of the system, [..., m] and [..., m, B] of the baseline.

    Δ = mean of the system's k seed scores − mean of the baseline's m. Its variance has two
    sources, estimated separately and added:
    - run to run (seeds): s²_sys/k + s²_base/m, the sample variances of the runs' corpus metrics on
      the test set, as in Welch's t-test (Welch 1947); this also holds the part of each run's
      example-level noise that differs between seeds;
    - test-set sampling: the paired bootstrap variance over test examples (Koehn 2004) of the
      difference of the seed-averaged resampled scores, less the run-noise part that the first
      source already counts: for each side, Σ_r var*(S_r − S̄)/(k(k−1)), the bootstrap variance of
      its runs' deviations from their mean (a method-of-moments variance-components split of the
      crossed seeds × examples design, as in a one-way random-effects ANOVA), floored at zero.
    t = Δ/se is referred to Student's t with Welch–Satterthwaite degrees of freedom (Satterthwaite
    1946), the test-set part counted as known (it is estimated from thousands of examples); p is
    two-sided and the interval Δ ± t_{df}·se, so the interval excludes 0 exactly when p < 1 − c.
    With fewer than two seeds on either side the run-to-run variance cannot be estimated: every
    output but Δ is NaN.

    Why not resample seeds: with 3 seeds a bootstrap over seeds sees only 10 distinct sets and
    underestimates their variance by (k−1)/k; simulated on null grids it rejects well above the
    nominal rate when run-to-run variance is a shift of the whole run (tests/test_stats.py).
    """
    a, b = np.asarray(system_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    ra, rb = np.asarray(system_resampled, dtype=float), np.asarray(baseline_resampled, dtype=float)
    k, m = a.shape[-1], b.shape[-1]
    delta = a.mean(-1) - b.mean(-1)
    if k < 2 or m < 2:
        return _no_test(delta)
    var_a, var_b = a.var(-1, ddof=1) / k, b.var(-1, ddof=1) / m
    mean_a, mean_b = ra.mean(-2), rb.mean(-2)
    example_var = np.maximum(0.0, (mean_a - mean_b).var(-1, ddof=1) - _within(ra) - _within(rb))
    return _t_test(delta, [(var_a, k - 1), (var_b, m - 1)], example_var, confidence)


def seed_paired(system_scores: np.ndarray, system_resampled: np.ndarray, baseline_scores: np.ndarray,
                baseline_resampled: np.ndarray, confidence: float = 0.95) -> dict[str, np.ndarray]:
    """`seed_aware` for runs paired by seed: run r of the system and run r of the baseline used the
    same seed ([..., k] and [..., k, B] on both sides, in the same seed order).

    A seed fixes what both runs of a pair share (the initial weights of new layers, the order of
    the training data, the `ce` checkpoint a continued strategy starts from), so much of the
    run-to-run variance is common to the pair and cancels in d_r = a_r − b_r. Run to run: s²_d/k,
    the paired t-test's (Student 1908) variance of the mean difference, with k − 1 degrees of
    freedom; test-set sampling: as in `seed_aware`, on the per-seed differences of the resampled
    scores (bootstrap variance of their mean, less its run-noise part; where s²_d = 0, as for a
    strategy that differs from its baseline by the same one example on every seed, s²_d counts no
    run noise and nothing is subtracted, so such a difference is not declared certain).

    The degrees of freedom are k − 1, not the Satterthwaite value `seed_aware` uses: at k = 3 the
    floored, noisy test-set estimate raised them enough to make the test liberal (on the 4,000
    simulated null grids of tests/test_stats.py where seeds shift both strategies alike, it
    rejected 5.95% at the nominal 5%; with k − 1, 3.5%). So the t quantile is 4.30 at 3 seeds
    (against 2.78 at Welch's 4), and pairing gains only where the seeds move both strategies
    together (on those grids it finds a 1.5-seed-SD effect 63% of the time, the unpaired test
    33%); it is a sensitivity analysis beside `seed_aware`.
    """
    d = np.asarray(system_scores, dtype=float) - np.asarray(baseline_scores, dtype=float)
    rd = np.asarray(system_resampled, dtype=float) - np.asarray(baseline_resampled, dtype=float)
    k = d.shape[-1]
    delta = d.mean(-1)
    if k < 2:
        return _no_test(delta)
    seed_var = d.var(-1, ddof=1) / k
    counted = seed_var > 1e-12 * (1.0 + np.abs(delta)) ** 2  # s²_d = 0 up to rounding: it counts no run noise
    example_var = np.maximum(0.0, rd.mean(-2).var(-1, ddof=1) - np.where(counted, _within(rd), 0.0))
    return _t_test(delta, [(seed_var, k - 1)], example_var, confidence, df=k - 1)


def _no_test(delta: np.ndarray) -> dict[str, np.ndarray]:
    """Δ alone: with one seed on a side nothing is known about run-to-run variance."""
    nan = np.full(np.shape(delta), math.nan)
    return {"delta": delta, **dict.fromkeys(("ci_low", "ci_high", "p", "se", "df", "seed_var", "example_var"), nan)}


def _within(resampled: np.ndarray) -> np.ndarray:
    """Σ_r var*(S_r − S̄)/(k(k−1)) over [..., k, B]: the bootstrap variance of the runs' deviations
    from their mean, the part of the test-set variance of a seed mean that the seeds' own variance
    already counts."""
    k = resampled.shape[-2]
    return (resampled - resampled.mean(-2)[..., None, :]).var(-1, ddof=1).sum(-1) / (k * (k - 1))


def _t_test(delta: np.ndarray, seed_parts: list[tuple[np.ndarray, int]], example_var: np.ndarray,
            confidence: float, df: float | None = None) -> dict[str, np.ndarray]:
    """t = Δ/se with se² = Σ seed parts + the test-set part, referred to Student's t with `df`,
    else the Welch–Satterthwaite degrees of freedom of the seed parts (each (variance, its dof)), the
    test-set part counted as known. Two-sided p; interval Δ ± t_df·se."""
    seed_var = sum(var for var, _ in seed_parts)
    variance = seed_var + example_var
    se = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = sum(var ** 2 / dof for var, dof in seed_parts)
        satterthwaite = np.where(denominator > 0, variance ** 2 / np.where(denominator > 0, denominator, 1.0), np.inf)
        df = satterthwaite if df is None else np.full(np.shape(delta), float(df))
        t = np.where(se > 0, np.abs(delta) / np.where(se > 0, se, 1.0), np.where(delta == 0, 0.0, np.inf))
    p = 2 * scipy.stats.t.sf(t, df)
    half = scipy.stats.t.ppf((1 + confidence) / 2, df) * se
    return {"delta": delta, "ci_low": delta - half, "ci_high": delta + half, "p": np.minimum(1.0, p), "se": se,
            "df": df, "seed_var": seed_var, "example_var": example_var}


def standardised_effect(system_scores: np.ndarray, baseline_scores: np.ndarray) -> np.ndarray:
    """Hedges' g over seeds (Hedges 1981), on arrays with any leading axes ([..., k] and [..., m]):
    Δ / s_pooled · J, s_pooled² = ((k−1)s²_sys + (m−1)s²_base)/(k+m−2), the pooled seed-to-seed
    variance of the corpus metric, and J = 1 − 3/(4(k+m−2) − 1) the small-sample correction. Δ in
    units of run-to-run noise: comparable across tasks and metrics, and centred on zero when the
    strategies do not differ. NaN with fewer than two seeds on a side, or a zero spread with Δ ≠ 0
    (0 when Δ = 0)."""
    a, b = np.asarray(system_scores, dtype=float), np.asarray(baseline_scores, dtype=float)
    k, m = a.shape[-1], b.shape[-1]
    delta = a.mean(-1) - b.mean(-1)
    if k < 2 or m < 2:
        return np.full(np.shape(delta), math.nan)
    dof = k + m - 2
    pooled = np.sqrt(((k - 1) * a.var(-1, ddof=1) + (m - 1) * b.var(-1, ddof=1)) / dof)
    correction = 1 - 3 / (4 * dof - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = correction * delta / pooled
    return np.where(pooled > 0, g, np.where(delta == 0, 0.0, math.nan))


def seed_aware_test(system: Runs, baseline: Runs, confidence: float = 0.95) -> Comparison:
    """`seed_aware` for one pair of strategies, with Hedges' g and the test-set-only p-value of
    their seed means beside it (`p_run`, what can be said with one seed: about those runs), and
    `seed_paired_test` on the seeds both ran where both say which (`paired`)."""
    out = _floats(seed_aware(system.scores, system.resampled, baseline.scores, baseline.resampled, confidence))
    run_only = paired_bootstrap(system.resampled.mean(0), baseline.resampled.mean(0), out["delta"], confidence)
    return Comparison(out["delta"], out["ci_low"], out["ci_high"], out["p"], se=out["se"], df=out["df"],
                      seed_var=out["seed_var"], example_var=out["example_var"],
                      effect=float(standardised_effect(system.scores, baseline.scores)), p_run=run_only.p_value,
                      paired=seed_paired_test(system, baseline, confidence))


def seed_paired_test(system: Runs, baseline: Runs, confidence: float = 0.95) -> Comparison | None:
    """`seed_paired` on the seeds both strategies ran (their delta is over those seeds only); None
    when either side's seeds are not known or they share fewer than two."""
    common = [i for i in system.ids if i in baseline.ids]
    if len(common) < 2:
        return None
    a, b = system.only(common), baseline.only(common)
    out = _floats(seed_paired(a.scores, a.resampled, b.scores, b.resampled, confidence))
    return Comparison(out["delta"], out["ci_low"], out["ci_high"], out["p"], se=out["se"], df=out["df"],
                      seed_var=out["seed_var"], example_var=out["example_var"])


def _floats(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(value) for key, value in arrays.items()}


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


def tied_ranks(means: Sequence[float], significant: np.ndarray) -> np.ndarray:
    """Competition ranks (1, 1, 3, ...) consistent with the pairwise tests.

    Systems are sorted by mean, best first. Each joins the rank of the system above it unless it is
    significantly different from (below) some system already holding that rank; then it starts the
    next rank, its position in the order. So two systems that share a rank never differ
    significantly, a system significantly below another is ranked below it, and ranks never
    contradict the order of the means. `significant[i, j]` (symmetric) says whether i and j differ
    significantly by whichever test the caller decides that pair with.
    """
    sig = np.asarray(significant, dtype=bool)
    order = [int(i) for i in np.argsort(-np.asarray(means, dtype=float), kind="stable")]
    ranks = np.zeros(len(order), dtype=int)
    group: list[int] = []
    for position, i in enumerate(order, start=1):
        if not group or any(sig[i, j] or sig[j, i] for j in group):
            group = []
            rank = position
        group.append(i)
        ranks[i] = rank
    return ranks
