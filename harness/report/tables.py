"""The tables of `harness report` and `harness leaderboard`, computed from an `Analysis`: each one a
display frame of formatted text (for Markdown, LaTeX and HTML) and a data frame of numbers (for CSV
and JSON), with its file stem, title, the rule it is ranked by (shown above it) and legend (below).
Which files they are written to, and in which formats, is `harness.report.writers`.

Tables: summary (task × strategy: main test metric, mean ± std over seeds), overall (the cross-task
leaderboard: mean tied rank, wins/ties/losses against ce, mean standardised effect, per-task cells),
leaderboard_<task> (ranks, CIs, Δ vs ce and vs each control with seed-aware CIs and Holm p-values,
standardised effect, calibration, guard metrics, cost, all metrics), guards, cost and not_completed.
Refused and failed cells say so, never 0.
"""
from __future__ import annotations

import inspect

import math
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.report.analysis import (ALPHA, BASELINE, CALIBRATION, CONTROLS, MIN_SEEDS, MIN_TEST_SEEDS,
                                     REPETITION_N, Analysis, status_words, strategy_class)

FEW_SEEDS = "†"
MISSING = "—"
NO_TEST = "no test (1 seed)"
_GUARD_COLUMNS = {"mean_length": "length", "repetition": f"rep-{REPETITION_N}", "empty_share": "empty %",
                  "kl": "KL", "entropy": "entropy"}
_CALIBRATION_COLUMNS = {"ece": "ECE", "nll": "NLL", "brier": "Brier"}
# The guards table's further columns for sampling strategies (final evaluation; reward rise over training)
_SAMPLING_COLUMNS = {"reward": "reward", "rm_reward": "proxy reward", "clip_fraction": "clip %",
                     "rm_heldout_accuracy": "RM acc %", "reward_rise": "reward rise"}
RANK_RULE = ("Ranks follow the means, and a strategy shares the rank of the one above it unless it is significantly "
             "below a strategy holding that rank (pairs with ce or a control by the p-values shown, all other pairs "
             "by the same seed-aware test Holm-adjusted over them), so strategies sharing a rank never differ "
             f"significantly; cells with fewer than {MIN_TEST_SEEDS} seeds are not ranked.")
GUARDS_LEGEND = ("Sampling terms (KL, entropy, reward, proxy reward, clip %, RM acc %) are the training means "
                 "before the final evaluation; reward rise: the optimised reward's mean over the last quarter of "
                 "the logged steps minus the first quarter's; ⚠ where it rose while the score fell (methods).")
CALIBRATION_LEGEND = ("ECE (×100), NLL (nats) and Brier per scored prediction: lower is better; in brackets the "
                      "difference to ce, * where significant.")


@dataclass
class Table:
    name: str  # file stem
    title: str
    display: pd.DataFrame  # formatted text, for Markdown, LaTeX and HTML
    data: pd.DataFrame  # numbers, for CSV and JSON
    index: bool = False  # whether the display frame's index is a column
    legend: str = ""  # how to read the table, shown under it
    rule: str = ""  # how the table is ranked, one sentence shown above it


# ---- formatting ---------------------------------------------------------------------------

def num(x: Any, digits: int = 2, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _comparison(a: Analysis, task: str, strategy: str, baseline: str, metric: str | None = None) -> pd.Series | None:
    """The comparison of `strategy` with `baseline` on the task's main metric (or on `metric`)."""
    c = a.comparisons
    rows = c[(c["task"] == task) & (c["strategy"] == strategy) & (c["baseline"] == baseline)
             & (c["metric"] == (metric or a.metrics[task]))]
    return rows.iloc[0] if len(rows) else None


def _arrow(a: Analysis, task: str, strategy: str) -> str:
    """↑ / ↓ where the difference to ce is significant after Holm's correction."""
    c = _comparison(a, task, strategy, BASELINE)
    return "" if c is None or not c["significant"] else (" ↑" if c["delta"] > 0 else " ↓")


def score(cell: pd.Series, with_n: bool = True) -> str:
    """'91.23 ± 0.31 (n=3)', '33.04 (n=1) †' or the cell's status."""
    if cell["status"] != "completed":
        return str(cell["status"])
    spread = "" if cell["n"] < 2 else f" ± {cell['std']:.2f}"
    count = f" (n={cell['n']})" if with_n else ""
    few = f" {FEW_SEEDS}" if cell["n"] < MIN_SEEDS and with_n else ""
    return f"{cell['mean']:.2f}{spread}{count}{few}"


def _delta(c: pd.Series | None) -> str:
    """'+1.23 [+0.40, +2.06]'; only Δ where no test is possible (one seed)."""
    if c is None:
        return MISSING
    if not c["testable"]:
        return num(c["delta"], signed=True)
    return f"{num(c['delta'], signed=True)} [{num(c['ci_low'], signed=True)}, {num(c['ci_high'], signed=True)}]"


def _p(c: pd.Series | None) -> str:
    if c is None:
        return MISSING
    if not c["testable"]:
        return NO_TEST
    return f"{c['p_holm']:.3f}{' *' if c['significant'] else ''}"


def _calibration(a: Analysis, task: str, strategy: str, metric: str, value: float) -> str:
    """'4.12 (−1.03 *)': the mean and, except for ce, the difference to ce with its significance."""
    if math.isnan(value):
        return MISSING
    digits = 2 if metric == "ece" else 3
    c = None if strategy == BASELINE else _comparison(a, task, strategy, BASELINE, metric)
    if c is None:
        return num(value, digits)
    star = " *" if c["significant"] else ""
    return f"{num(value, digits)} ({num(c['delta'], digits, signed=True)}{star})"


def _drop_empty(frame: pd.DataFrame, keep: int = 2, always: tuple[str, ...] = ()) -> pd.DataFrame:
    """Drops display columns (after the first `keep`, except `always`) that hold nothing but '—'."""
    empty = [c for c in frame.columns[keep:] if c not in always and (frame[c].astype(str) == MISSING).all()]
    return frame.drop(columns=empty)


# ---- tables -------------------------------------------------------------------------------

def summary_table(a: Analysis) -> Table:
    display = pd.DataFrame(index=[f"{t} ({a.metrics[t]})" for t in a.tasks], columns=a.strategies(), dtype=object)
    for _, cell in a.cells.iterrows():
        display.loc[f"{cell['task']} ({cell['metric']})", cell["strategy"]] = \
            score(cell) + _arrow(a, cell["task"], cell["strategy"])
    return Table("summary", "Test scores: mean ± std over seeds (n seeds)", display.fillna("not run"),
                 a.cells, index=True, legend=f"{FEW_SEEDS} fewer than {MIN_SEEDS} seeds; ↑/↓ significantly "
                 f"above/below ce (seed-aware test, Holm-adjusted p < {ALPHA}; none with one seed); refused/failed: no "
                 "run of the cell completed; not run: no record.")


def _guard(key: str, value: float) -> str:
    """A guard metric as shown: shares in percent, repetition and rewards with three decimals."""
    if key in ("empty_share", "clip_fraction", "rm_heldout_accuracy"):
        return num(100 * value, 1)
    if key in ("reward", "rm_reward", "reward_rise"):
        return num(value, 3, signed=key == "reward_rise")
    return num(value, 3 if key == "repetition" else 2)


def _seeds_text(cell: pd.Series) -> str:
    """'3', '2 †', or '2 † (+1 failed)' where some seeds of a completed cell did not complete."""
    n = int(cell["n"])
    lost = status_words({"failed": int(cell["n_failed"]), "refused": int(cell["n_refused"])})
    return (f"{n} {FEW_SEEDS}" if 0 < n < MIN_SEEDS else str(n)) + (f" (+{lost})" if n and lost else "")


def leaderboard(a: Analysis, task: str) -> Table:
    """One task's strategies by tied rank: score and spread, CI, differences to ce and to each
    control present, standardised effect, calibration, guard metrics, cost and the other test metrics."""
    metric = a.metrics[task]
    cells = a.cells[a.cells["task"] == task].set_index("strategy")
    guards = a.guards[a.guards["task"] == task].set_index("strategy")
    cost = a.cost[a.cost["task"] == task].set_index("strategy")
    means = a.test_means[a.test_means["task"] == task].pivot(index="strategy", columns="metric", values="mean")
    controls = a.controls(task)
    calibrated = task in a.calibrated

    def position(strategy: str) -> tuple[bool, float, float, str]:
        cell = cells.loc[strategy]
        ranked = not math.isnan(cell["rank"])
        return not ranked, cell["rank"] if ranked else 0.0, -cell["mean"] if cell["n"] else 0.0, strategy

    display, data = [], []
    for strategy in sorted(a.strategies(task), key=position):
        cell = cells.loc[strategy]
        vs = {b: _comparison(a, task, strategy, b) for b in (BASELINE, *controls)}
        row = {"rank": MISSING if math.isnan(cell["rank"]) else str(int(cell["rank"])), "strategy": strategy,
               "seeds": _seeds_text(cell), metric: score(cell, with_n=False), "95% CI": _interval(cell),
               "Δ vs ce [95% CI]": "baseline" if strategy == BASELINE else _delta(vs[BASELINE]),
               "p (Holm)": _p(vs[BASELINE]),
               "g vs ce": MISSING if vs[BASELINE] is None else num(vs[BASELINE]["effect"], signed=True)}
        for control in controls:
            row[f"Δ vs {control} [95% CI]"] = "control" if strategy == control else _delta(vs[control])
            row[f"p vs {control} (Holm)"] = _p(vs[control])
        numbers = {"strategy": strategy, **cell.drop("task").to_dict()}
        for baseline, c in vs.items():
            if c is not None:
                numbers.update({f"{k}_vs_{baseline}": c[k] for k in ("delta", "ci_low", "ci_high", "se", "df", "p",
                                                                     "p_holm", "significant", "testable", "effect",
                                                                     "seed_sd", "p_run")})
        if calibrated:
            for m, label in _CALIBRATION_COLUMNS.items():
                value = guards.loc[strategy, m] if strategy in guards.index else math.nan
                row[label] = _calibration(a, task, strategy, m, value)
                c = _comparison(a, task, strategy, BASELINE, m)
                if c is not None:
                    numbers.update({f"{m}_{k}_vs_{BASELINE}": c[k] for k in ("delta", "ci_low", "ci_high", "p_holm",
                                                                              "significant", "testable")})
        for key, label in _GUARD_COLUMNS.items():
            row[label] = _guard(key, guards.loc[strategy, key]) if strategy in guards.index else MISSING
        row["device-s"] = num(cost.loc[strategy, "seconds"], 0) if strategy in cost.index else MISSING
        row["samples/s"] = num(cost.loc[strategy, "samples_per_second"], 1) if strategy in cost.index else MISSING
        for frame in (guards, cost):
            if strategy in frame.index:
                numbers.update(frame.loc[strategy].drop("task").to_dict())
        for m in means.columns:
            has = strategy in means.index
            if m != metric and m not in CALIBRATION:
                row[m] = num(means.loc[strategy, m]) if has else MISSING
            if has:
                numbers[f"test.{m}"] = means.loc[strategy, m]
        display.append(row)
        data.append(numbers)
    legend = (f"* Holm-adjusted p < {ALPHA} by the seed-aware test (run-to-run and test-set variance); "
              f"{NO_TEST}: with one seed no significance can be claimed about the strategy, only about its run. "
              "g: Δ over the pooled seed-to-seed SD (Hedges' g). "
              f"{FEW_SEEDS} fewer than {MIN_SEEDS} seeds." + (f" {CALIBRATION_LEGEND}" if calibrated else ""))
    return Table(f"leaderboard_{task}", f"Leaderboard: {task} (ranked by test {metric})",
                 _drop_empty(pd.DataFrame(display), always=tuple(_CALIBRATION_COLUMNS.values()) if calibrated else ()),
                 pd.DataFrame(data), legend=legend, rule=RANK_RULE)


def _interval(cell: pd.Series) -> str:
    return MISSING if math.isnan(cell["ci_low"]) else f"[{cell['ci_low']:.2f}, {cell['ci_high']:.2f}]"


OVERALL_RULE = ("Mean rank over the tasks where strategies are ranked, a task on which a strategy has no rank (not "
                f"run, refused, failed, or fewer than {MIN_TEST_SEEDS} seeds) counting as last there (1 + the number "
                "of strategies ranked, shown as → #k), so failing on a hard task never helps; ties broken by wins − "
                "losses against ce, then by the mean standardised effect.")


def overall_table(a: Analysis) -> Table:
    """Strategies by mean tied rank over tasks (a missing cell counting as last), with wins, ties and
    losses against ce, the mean standardised effect, and each task's rank and score beside."""
    cells = a.cells.set_index(["task", "strategy"])
    ranked_tasks = sorted(a.cells.dropna(subset=["rank"])["task"].unique())
    last = {t: 1 + int(a.cells[(a.cells["task"] == t)]["rank"].notna().sum()) for t in ranked_tasks}
    display = []
    for row in a.overall.itertuples():
        baseline = row.strategy == BASELINE
        entry = {"strategy": row.strategy, "mean rank": num(row.mean_rank),
                 "W/T/L vs ce": "baseline" if baseline else
                 (f"{row.wins}/{row.ties}/{row.losses}" if row.tasks_tested else MISSING),
                 "mean g vs ce": MISSING if baseline else num(row.mean_effect, signed=True),
                 "tasks ranked": f"{row.tasks_ranked}/{len(a.tasks)}"}
        for task in a.tasks:
            counted = f" → #{last[task]}" if task in last else ""
            if (task, row.strategy) not in cells.index:
                entry[task] = f"not run{counted}"
                continue
            cell = cells.loc[(task, row.strategy)]
            if not math.isnan(cell["rank"]):
                entry[task] = f"#{int(cell['rank'])} · {score(cell, with_n=False)}"
            elif cell["status"] == "completed":
                entry[task] = f"{score(cell, with_n=False)} (n={int(cell['n'])}){counted}"
            else:
                entry[task] = f"{score(cell)}{counted}"
        display.append(entry)
    legend = ("W/T/L: tasks on which the strategy is significantly above / not significantly different from / "
              f"significantly below ce (seed-aware test, Holm-adjusted p < {ALPHA}; tasks without a test are not "
              "counted). mean g: the standardised effect against ce (Δ over the pooled seed-to-seed SD, Hedges' g), "
              "averaged over the tasks where both have at least two seeds; scale-free, and centred on zero for a "
              "strategy no different from ce however noisy.")
    return Table("overall", "Overall leaderboard: mean tied rank across tasks", pd.DataFrame(display), a.overall,
                 legend=legend, rule=OVERALL_RULE)


def guards_table(a: Analysis) -> Table:
    """Cells with at least one guard metric (generation tasks, sampling strategies) or on a task that
    measures calibration."""
    keep = a.guards[list(_GUARD_COLUMNS)].notna().any(axis=1) | a.guards["task"].isin(a.calibrated)
    guards = a.guards[keep]
    display = pd.DataFrame({"task": guards["task"], "strategy": guards["strategy"]})
    for key, label in {**_GUARD_COLUMNS, **_SAMPLING_COLUMNS}.items():
        display[label] = [_guard(key, v) for v in guards[key]]
    flagged = set(zip(a.over_optimised["task"], a.over_optimised["strategy"]))
    display["over-optimised?"] = ["⚠ reward ↑, score ↓" if key in flagged else MISSING
                                  for key in zip(guards["task"], guards["strategy"])]
    for key, label in _CALIBRATION_COLUMNS.items():
        display[label] = [_calibration(a, t, s, key, v) for t, s, v in zip(guards["task"], guards["strategy"], guards[key])]
    calibrated = tuple(_CALIBRATION_COLUMNS.values()) if a.calibrated else ()
    legend = " ".join(filter(None, (GUARDS_LEGEND, CALIBRATION_LEGEND if a.calibrated else "")))
    return Table("guards", "Guard metrics and calibration (means over seeds)", _drop_empty(display, always=calibrated),
                 guards, legend=legend)


def cost_table(a: Analysis) -> Table:
    c = a.cost
    display = pd.DataFrame({
        "task": c["task"], "strategy": c["strategy"], "hardware": c["hardware"],
        "device-s per run": [num(v, 0) for v in c["seconds"]],
        "device-s with start checkpoint": [num(v, 0) for v in c["seconds_with_start"]],
        "samples/s": [num(v, 1) for v in c["samples_per_second"]],
        "train s/epoch": [num(v, 1) for v in c["epoch_seconds"]],
        "epoch ÷ ce": [MISSING if s == BASELINE or math.isnan(v) else f"{v:.1f}×"
                       for s, v in zip(c["strategy"], c["epoch_vs_ce"])],
        "start s": [num(v, 1) for v in c["start_seconds"]],
        "score": [num(v) for v in c["score"]],
        "Δ vs ce": [MISSING if s == BASELINE else num(v, signed=True) for s, v in zip(c["strategy"], c["delta"])],
        "Δ per extra device-hour": [num(v, signed=True) for v in c["delta_per_extra_hour"]]})
    legend = ("epoch ÷ ce: training time per training row relative to ce's (ce's samples/s over the strategy's), "
              "i.e. an epoch over the same rows; for a strategy that starts from ce's checkpoint, relative to its "
              "control ce_continued (ce's epoch from the same weights on the same rows) where that ran. start s: "
              "the strategy's one-off set-up before training (preference sets, reward models).")
    return Table("cost", "Cost and quality per device-hour", display, c, legend=legend)


def paired_table(a: Analysis) -> Table:
    """Every main-metric comparison under the seed-paired test beside the report's own, and whether
    the verdict (Holm-adjusted p < α) differs: how much the conclusions rest on treating seeds of
    different strategies as independent."""
    c = a.comparisons[a.comparisons["main"] & (a.comparisons["n_paired"] >= MIN_TEST_SEEDS)]
    paired = c.assign(delta=c["delta_paired"], ci_low=c["ci_low_paired"], ci_high=c["ci_high_paired"],
                      p_holm=c["p_holm_paired"], significant=c["p_holm_paired"] < ALPHA,
                      testable=c["p_holm_paired"].notna())
    changed = [bool(x) != bool(y) for x, y in zip(c["significant"], paired["significant"])]
    display = pd.DataFrame({
        "task": c["task"], "strategy": c["strategy"], "baseline": c["baseline"], "seeds": c["n_paired"],
        "Δ [95% CI]": [_delta(row) for _, row in c.iterrows()], "p (Holm)": [_p(row) for _, row in c.iterrows()],
        "Δ paired [95% CI]": [_delta(row) for _, row in paired.iterrows()],
        "p paired (Holm)": [_p(row) for _, row in paired.iterrows()],
        "verdict": ["changes" if x else "same" for x in changed]})
    legend = ("Seed-paired: seed s of the strategy against seed s of the baseline, on the seeds both ran; the "
              "run-to-run variance is that of the per-seed differences (a paired t-test's, k − 1 degrees of "
              "freedom) plus the same test-set part, Holm-adjusted within the same families. A seed fixes the "
              "data order, new layers' initial weights and, for a strategy started from ce, the checkpoint it "
              "shares with ce_continued, so pairing removes what the seeds move together. A sensitivity analysis: "
              "the leaderboards' stars, ranks and wins use the unpaired test. verdict: whether significance at "
              f"α = {ALPHA} differs between the two.")
    return Table("paired", "Seed-paired sensitivity of the comparisons (main metric)", display,
                 c.assign(significant_paired=paired["significant"], verdict_changes=changed), legend=legend)


def not_completed_table(a: Analysis) -> Table:
    rows = a.runs[a.runs["status"] != "completed"]
    display = pd.DataFrame({"task": rows["task"], "strategy": rows["strategy"], "seed": rows["seed"],
                            "status": rows["status"],
                            "why": [str(w).strip().splitlines()[-1][:160] if str(w).strip() else "" for w in rows["why"]]})
    return Table("not_completed", "Runs that did not complete (refused or failed)", display, rows)


def evaluations_table(evaluations: list[dict[str, Any]]) -> Table:
    """`harness evaluate` results: each stored run scored on other test data, beside its own test score."""
    rows = pd.DataFrame([{"task": e["task"], "strategy": e["reward"], "seed": e["seed"], "run": e["run"],
                          "data": ", ".join(Path(f["path"]).name for f in e["data"]["files"]) if "files" in e["data"]
                          else f"split {e['data']['split']}",
                          "md5": ",".join(f["md5"][:8] for f in e["data"].get("files", [])),
                          "metric": e["main_metric"], "score": e["test"][e["main_metric"]], "n": e["n_examples"]}
                         for e in evaluations])
    display = rows.assign(score=[num(v) for v in rows["score"]])
    return Table("evaluations", "Evaluations of stored runs on other test data (harness evaluate)", display, rows,
                 legend="Each row: one run's kept checkpoint scored on the named data without retraining; md5: "
                        "the first characters of each file's checksum.")


def tables(a: Analysis, evaluations: list[dict[str, Any]] | None = None) -> list[Table]:
    """Every table of the report; the evaluations table only where the store holds evaluations."""
    return [overall_table(a), summary_table(a), *(leaderboard(a, t) for t in a.tasks), guards_table(a),
            cost_table(a), paired_table(a), not_completed_table(a),
            *([evaluations_table(evaluations)] if evaluations else [])]


def strategy_methods(a: Analysis) -> list[str]:
    """Each strategy in the report as its code now implements it: its whole docstring (objective,
    estimator, baseline, normalisation, source and deviations from the paper), one line each."""
    lines = []
    for label in a.strategies():
        cls = strategy_class(label)
        if cls is None:  # a strategy the report's process does not know (an --include not given)
            lines.append(f"Strategy {label}: not registered here; rerun with its --include to describe it.")
            continue
        doc = " ".join(inspect.cleandoc(cls.__doc__ or "(no docstring)").split())
        lines.append(f"Strategy {label} [{cls.family}]: {doc}")
    return lines


def methods(a: Analysis) -> list[str]:
    """How every number was computed (methods.md and the page)."""
    controls = "; ".join(f"{c.name} ({c.what}) with {c.compares}" for c in CONTROLS)
    return [
        f"Across seeds: mean, sample standard deviation and 95% Student-t interval of the main test metric; "
        f"{FEW_SEEDS} marks cells with fewer than {MIN_SEEDS} seeds.",
        "Test-set resampling: a paired bootstrap over test examples (Koehn 2004), "
        f"{a.n_resamples} resamples (seed {a.seed}) shared by every run of a task; on each resample each run's "
        "corpus metric (F1, BLEU, ECE, ...) is recomputed with the task's aggregate from its per-example "
        "statistics, never averaged from sentence scores.",
        "Against ce and the controls (seed-aware test): Δ = difference of the two strategies' seed means. Its variance is the sum "
        "of its two sources: run to run, s²_a/k + s²_b/m from the runs' scores on the test set (as in Welch's "
        "t-test; Welch 1947), and test-set sampling, the bootstrap variance of the difference of the "
        "seed-averaged resampled scores less the run noise it shares with the first part (each side's "
        "Σ_r var*(S_r − S̄)/(k(k−1)); a method-of-moments variance-components split of the seeds × examples "
        "design, floored at 0). t = Δ/se is referred to Student's t with Welch–Satterthwaite degrees of freedom "
        "(Satterthwaite 1946); p is two-sided and the 95% interval Δ ± t_{df, 0.975}·se, so it excludes 0 exactly when "
        "the unadjusted p < 0.05. "
        "This follows the advice to test over several optimiser runs, not one (Clark et al. 2011), and to "
        "account for both data sampling and seeds (Bouthillier et al. 2021). Checked by simulation "
        "(tests/test_stats.py; 3 seeds, seed SD 0.5 points, 1,000 examples, a mean metric, 4,000 null grids per "
        "setting): it rejects 3.6% of grids when seeds shift whole runs and 5.2% when shifts, per-example noise "
        "and per-example effects mix (one-sided 95% upper bounds 4.1% and 5.8%), where the test-set bootstrap "
        "alone rejects 40% and 9%. A two-level bootstrap (seeds, then examples) was tried and not used: with 3 "
        "seeds it sees 10 distinct seed sets and understates their variance by a third; in simulations of the same kind "
        "it rejected 7% of null grids in the first setting, and 20% where the seed variance is almost all a "
        "shift of whole runs.",
        f"With fewer than {MIN_TEST_SEEDS} seeds on either side nothing is known about run-to-run variance: no "
        "p-value, star, arrow or rank; what can be said is about the single run (p_run in comparisons.csv, "
        "the test-set bootstrap alone with the null distribution shifted to mean zero, Efron & Tibshirani "
        "1993: (1 + #|δ* − mean δ*| ≥ |Δ|)/(B + 1)).",
        f"p-values are Holm-adjusted (Holm 1979) within each task's family of comparisons with one baseline on "
        f"one metric; '*' and ↑/↓ mark adjusted p < {ALPHA}. Controls, each in its own column where the store "
        f"has it: {controls}.",
        "Seed-paired sensitivity (paired.md): each main-metric comparison repeated with seed s of the strategy "
        "against seed s of the baseline, on the seeds both ran: se² = s²_d/k, the variance of the per-seed "
        "differences d_s over k (a paired t-test, Student 1908), plus the test-set part computed as above on the "
        "per-seed differences of the resampled scores; Student's t with k − 1 degrees of freedom (not the "
        "Satterthwaite value: at 3 seeds that made it liberal in simulation, 5.95% of null grids at 5% "
        "against 3.5% with k − 1), "
        "Holm-adjusted within the same families. It gains where the seeds move both strategies together and "
        "loses degrees of freedom otherwise; the stars, ranks and wins use the unpaired test.",
        "g: Hedges' g over seeds (Hedges 1981), Δ divided by the pooled seed-to-seed standard deviation "
        "√(((k−1)s²_a + (m−1)s²_b)/(k+m−2)), times 1 − 3/(4(k+m−2) − 1).",
        RANK_RULE,
        f"Overall table: {OVERALL_RULE[0].lower()}{OVERALL_RULE[1:]} Beside it, wins/ties/losses against ce by the seed-aware test and the mean of g "
        "over tasks: scale-free, and unbiased for zero for a strategy no different from ce however noisy (unlike "
        "a mean normalised change, which divides gains by the headroom and losses by the score).",
        "Calibration (classification and tagging): expected calibration error over 15 equal-width confidence "
        "bins ×100 (Guo et al. 2017), mean negative log-likelihood of the gold label and Brier score (Brier "
        "1950) per scored prediction, recomputed on every resample from the runs' bin counts and sums; "
        "compared with ce by the same seed-aware test (lower is better). Records written before calibration "
        "was stored show — and a warning says how many.",
        f"Guards: for generated text, mean length in words, rep-{REPETITION_N} (share of an output's word "
        f"{REPETITION_N}-grams repeating an earlier one) and the share of empty outputs; for sampling strategies, "
        "the training means over the steps before the final evaluation of KL to the reference (k3 estimator, "
        "nats per output), policy entropy, the reward of the samples (the task metric, or the simulated "
        "annotator's), the reward model's proxy reward, the PPO clip fraction and the reward model's held-out "
        "preference accuracy; the same terms per evaluation are the sampling curves. 'Reward rise' is the "
        "optimised reward (rlhf: the proxy) over the last quarter of the logged training steps minus the first "
        "quarter; a cell is flagged (⚠, and in the notes) when it rose while the score fell: for a strategy "
        "started from the ce checkpoint, the test mean below ce's (the Δ of the leaderboard, significant or "
        "not); otherwise the mean validation score at the last evaluation below the first (Gao, Schulman & "
        "Hilton 2023, Scaling Laws for Reward Model Overoptimization, ICML).",
        "Cost: device-seconds per run from start to record (plus the ce run whose checkpoint a strategy starts "
        "from), training samples/s, training seconds per epoch and their ratio to ce's (same hardware only), 'start "
        "s' the strategy's one-off set-up before training (rlhf and dpo: sampling and judging the preference set, "
        "fitting the reward model), counted in the run's seconds but not in its epochs; 'Δ per extra device-hour' "
        "divides the gain over ce by the time spent beyond ce.",
        "Figures (the HTML page and plots/): per task, a forest plot of each strategy's Δ to ce and, for "
        "strategies started from a checkpoint, to ce_continued, with the seed-aware 95% interval above, a band of "
        "± the pooled seed-to-seed SD (how far single runs scatter, which the interval of the mean does not show) "
        "and significant differences filled and starred; it replaces a bar chart of absolute means, whose bars "
        "hide differences of a point or two and whose axis must start at an arbitrary value. Refused and failed "
        "cells are named, never drawn as 0. Learning, sampling and per-evaluation curves are means over seeds, "
        "drawn only for strategies with two points or more. The cost figure plots the test score against minutes "
        "per run including the start checkpoint. ce and each control have a fixed grey in every figure, every "
        "other strategy a colour from a palette without greys and a marker.",
        *strategy_methods(a),
        "References: Bouthillier et al. 2021, Accounting for Variance in Machine Learning Benchmarks, MLSys. "
        "Brier 1950, Verification of Forecasts Expressed in Terms of Probability, Monthly Weather Review 78(1). "
        "Clark, Dyer, Lavie & Smith 2011, Better Hypothesis Testing for Statistical Machine Translation: "
        "Controlling for Optimizer Instability, ACL. Efron & Tibshirani 1993, An Introduction to the Bootstrap. "
        "Guo, Pleiss, Sun & Weinberger 2017, On Calibration of Modern Neural Networks, ICML. Hedges 1981, "
        "Distribution Theory for Glass's Estimator of Effect Size and Related Estimators, Journal of Educational "
        "Statistics 6(2). Holm 1979, A Simple Sequentially Rejective Multiple Test Procedure, Scandinavian Journal "
        "of Statistics 6(2). Koehn 2004, Statistical Significance Tests for Machine Translation Evaluation, EMNLP. "
        "Satterthwaite 1946, An Approximate Distribution of Estimates of Variance Components, Biometrics "
        "Bulletin 2(6). Welch 1947, The Generalization of 'Student's' Problem when Several Different Population "
        "Variances are Involved, Biometrika 34.",
    ]
