"""`harness report` / `harness leaderboard` on a small stored grid of synthetic records: every output
format valid in its format, the choice of formats and a user's own writer, missing cells shown as
such, significance and ties, guard metrics, cost, the manifest and the figures (the HTML page in a
browser: tests/test_page.py)."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from harness.report import ReportError
from harness.report.analysis import analyse, repetition_rate, run_guards, strategy_labels
from harness.cli import main
from harness.config import load_grid
from harness.grid.plan import expand
from harness.store import Store
from harness.report.writers import (formats, print_leaderboards, register_writer, unregister_writer,
                                    write_report)
from tests.synthetic import completed, grid_records, write_store

TASKS = ("ner", "sentiment", "translation")
RESAMPLES = 300


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("report")
    store = write_store(root / "store")
    out = root / "results"
    return out, write_report(store, out, echo=False, n_resamples=RESAMPLES)


def cells(payload: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["task"], c["strategy"]): c for c in payload["cells"]}


def check_latex(tex: str) -> None:
    """Valid LaTeX as far as can be told without a TeX installation: no Markdown, balanced environments,
    braces and math shifts, every special character of the text escaped."""
    assert not any(line.lstrip().startswith("#") for line in tex.splitlines()), "a Markdown heading in LaTeX"
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") >= 1
    assert all(rule in tex for rule in (r"\toprule", r"\midrule", r"\bottomrule"))
    document = tex.split(r"\begin{document}")[-1]  # the preamble's macros may use # and >
    body = "\n".join(line for line in document.splitlines() if not line.startswith("%"))
    unescaped = re.sub(r"\\[{}$&%#_]", "", body)
    assert unescaped.count("{") == unescaped.count("}") and unescaped.count("$") % 2 == 0
    assert not re.search(r"[%#_]", unescaped), "an unescaped special character"  # & separates columns
    assert not set("↑↓±Δ†—<>|") & set(body)


class _Tags(HTMLParser):
    """Counts the opened and closed tables of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = self.closed = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.opened += tag == "table"

    def handle_endtag(self, tag: str) -> None:
        self.closed += tag == "table"


def check_html(page: str) -> int:
    """The number of tables of a complete page with balanced tables."""
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    tags = _Tags()
    tags.feed(page)
    assert tags.opened == tags.closed
    return tags.opened


def test_every_output_format_is_written(report: tuple[Path, dict[str, Any]]) -> None:
    out, payload = report
    tables = ["summary", "overall", "guards", "cost", "paired", "not_completed", *(f"leaderboard_{t}" for t in TASKS)]
    for name in tables:
        md = (out / f"{name}.md").read_text()
        assert md.startswith("# ") and re.search(r"(?m)^\|[-|:]+\|$", md), f"{name}.md has no table"
        check_latex((out / f"{name}.tex").read_text())
        assert not (out / f"{name}.csv").read_text().startswith("#")
        pd.read_csv(out / f"{name}.csv")
    board = (out / "leaderboard_sentiment.md").read_text()
    assert all(f"| {column}" in board for column in ("rank", "strategy", "Δ vs ce [95% CI]", "p (Holm)"))
    assert r"constant\_reward" in (out / "summary.tex").read_text() and r"$\pm$" in (out / "summary.tex").read_text()
    assert "paired bootstrap" in (out / "methods.md").read_text() and "# Warnings" in (out / "methods.md").read_text()
    for name in ("comparisons", "runs"):
        pd.read_csv(out / f"{name}.csv")
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(payload, default=str))
    assert set(payload["leaderboards"]) == set(TASKS)
    for task in TASKS:
        for kind in ("forest", "curves", "sampling"):
            assert (out / "plots" / f"{kind}_{task}.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "plots" / "cost.png").exists()
    page = (out / "index.html").read_text()
    assert check_html(page) == len(tables)
    assert page.count("data:image/png;base64,") == len(list((out / "plots").glob("*.png")))
    assert "http://" not in page and "https://" not in page and "<script>" in page and 'class="sortable"' in page
    assert json.loads((out / "manifest.json").read_text()) == payload["manifest"]


def test_missing_cells_are_shown_as_such_never_as_zero(report: tuple[Path, dict[str, Any]]) -> None:
    out, payload = report
    by_cell = cells(payload)
    assert by_cell[("translation", "dice")]["status"] == "refused" and by_cell[("translation", "dice")]["mean"] is None
    assert by_cell[("sentiment", "mrt")]["status"] == "failed" and by_cell[("sentiment", "mrt")]["n"] == 0
    assert payload["summary"]["translation (bleu_lc)"]["dice"] == "refused"
    assert payload["summary"]["sentiment (accuracy)"]["mrt"] == "failed"
    assert payload["summary"]["ner (f1)"]["mrt"] == "not run"
    board = (out / "leaderboard_sentiment.md").read_text()
    mrt = next(line for line in board.splitlines() if "| mrt " in line)
    assert "failed" in mrt and "0.00" not in mrt and mrt.split("|")[1].strip() == "—"
    overall = next(line for line in (out / "overall.md").read_text().splitlines() if "| dice " in line)
    assert "refused" in overall
    csv = pd.read_csv(out / "summary.csv")
    refused = csv[(csv["task"] == "translation") & (csv["strategy"] == "dice")].iloc[0]
    assert refused["status"] == "refused" and math.isnan(refused["mean"])
    not_completed = pd.read_csv(out / "not_completed.csv")
    assert len(not_completed) == 9 and set(not_completed["status"]) == {"failed", "refused"}
    focal = by_cell[("ner", "focal")]
    assert focal["n"] == 2 and focal["n_failed"] == 1  # the failed seed is counted, not averaged in as 0
    assert "(+1 failed)" in (out / "leaderboard_ner.md").read_text()


def test_significance_ranks_and_ties(report: tuple[Path, dict[str, Any]]) -> None:
    out, payload = report
    by_cell = cells(payload)
    main = {"ner": "f1", "sentiment": "accuracy", "translation": "bleu_lc"}
    comparisons = {(c["task"], c["strategy"], c["baseline"]): c for c in payload["comparisons"]
                   if c["metric"] == main[c["task"]]}
    for task in TASKS:
        better = comparisons[(task, "reinforce", "ce")]
        assert better["significant"] and better["delta"] > 0 and better["ci_low"] > 0
        assert comparisons[(task, "reinforce", "constant_reward")]["significant"]
        assert by_cell[(task, "reinforce")]["rank"] == 1
        same = comparisons[(task, "label_smoothing", "ce")]  # exactly ce's predictions
        assert same["delta"] == 0 and same["p"] == 1 and same["p_holm"] == 1 and not same["significant"]
        assert by_cell[(task, "label_smoothing")]["rank"] == by_cell[(task, "ce")]["rank"] > 1
        assert (task, "label_smoothing", "constant_reward") not in comparisons  # not a sampling strategy
        family = [c for c in comparisons.values() if c["task"] == task and c["baseline"] == "ce"]
        assert all(c["p_holm"] >= c["p"] for c in family)
        # the seed-paired sensitivity test beside it: same seeds, same Δ, its own Holm family
        assert better["n_paired"] == 3 and better["delta_paired"] == pytest.approx(better["delta"])
        assert (better["ci_low_paired"] > 0) == (better["p_paired"] < 0.05)
        assert better["p_holm_paired"] >= better["p_paired"]
        assert same["delta_paired"] == 0 and same["p_paired"] == 1
        assert all(c["p_holm_paired"] >= c["p_paired"] for c in family if c["n_paired"] >= 2)
    paired = pd.read_csv(out / "paired.csv")
    assert set(paired["verdict_changes"]) <= {True, False} and (paired["n_paired"] >= 2).all()
    assert len(paired) == sum(c["n_paired"] >= 2 for c in payload["comparisons"] if c["metric"] == main[c["task"]])
    overall = {row["strategy"]: row for row in payload["overall"]}
    assert payload["overall"][0]["strategy"] == "reinforce" and overall["reinforce"]["mean_rank"] == 1
    assert (overall["reinforce"]["wins"], overall["reinforce"]["losses"]) == (3, 0)
    assert overall["reinforce"]["mean_effect"] > 0
    assert (overall["label_smoothing"]["wins"], overall["label_smoothing"]["ties"]) == (0, 3)
    assert overall["label_smoothing"]["mean_effect"] == 0
    assert overall["dice"]["tasks_ranked"] == 2 and overall["dice"]["tasks_tested"] == 2


def test_a_missing_cell_counts_as_last(report: tuple[Path, dict[str, Any]]) -> None:
    """mrt failed on sentiment and was not run elsewhere; dice was refused on translation: each such
    cell counts as 1 + the number of strategies ranked on the task, and the table says so."""
    out, payload = report
    ranked = {task: sum(1 for c in payload["cells"] if c["task"] == task and c["rank"] is not None) for task in TASKS}
    overall = {row["strategy"]: row for row in payload["overall"]}
    assert overall["mrt"]["mean_rank"] == pytest.approx(sum(1 + n for n in ranked.values()) / len(TASKS))
    dice = [c["rank"] for c in payload["cells"] if c["strategy"] == "dice" and c["rank"] is not None]
    assert overall["dice"]["mean_rank"] == pytest.approx((sum(dice) + 1 + ranked["translation"]) / len(TASKS))
    assert payload["overall"][-1]["strategy"] == "mrt"
    table = (out / "overall.md").read_text()
    assert "counting as last" in table.split("|")[0]  # the rule, above the table
    assert f"refused → #{1 + ranked['translation']}" in table and f"failed → #{1 + ranked['sentiment']}" in table


def test_fewer_than_three_seeds_are_flagged(report: tuple[Path, dict[str, Any]]) -> None:
    out, payload = report
    assert payload["summary"]["ner (f1)"]["constant_reward"].endswith("(n=2) †")
    assert payload["summary"]["ner (f1)"]["reinforce"].endswith("(n=3) ↑")
    (note,) = [note for note in payload["notes"] if note.startswith("2 seed(s), fewer than 3, in ")]
    assert "ner / constant_reward" in note and "ner / reinforce" not in note
    assert "Warnings" in (out / "index.html").read_text()


def test_guard_metrics() -> None:
    assert repetition_rate("a b a b") == pytest.approx(1 / 3)  # bigrams ab, ba, ab: one repeat of three
    assert repetition_rate("the cat sat") == 0 and math.isnan(repetition_rate("word"))
    record = completed("translation", "reinforce", 2, 0.9, sampling=True)
    guards = run_guards(record)
    predictions = [ex["prediction"] for ex in record.test_examples]
    empty = sum(not p for p in predictions) / len(predictions)
    assert empty > 0 and guards["empty_share"] == pytest.approx(empty)
    assert guards["mean_length"] == pytest.approx(sum(len(p.split()) for p in predictions) / len(predictions))
    assert guards["kl"] == pytest.approx(0.1) and guards["entropy"] == 0.5
    ner = run_guards(completed("ner", "ce", 1, 0.1))
    assert all(math.isnan(ner[k]) for k in ("mean_length", "repetition", "empty_share", "kl", "entropy"))


def test_cost_counts_the_checkpoint_a_strategy_starts_from(report: tuple[Path, dict[str, Any]]) -> None:
    _, payload = report
    cost = {(c["task"], c["strategy"]): c for c in payload["cost"]}
    reinforce, ce = cost[("ner", "reinforce")], cost[("ner", "ce")]
    assert reinforce["seconds"] == 150 and reinforce["seconds_with_start"] == 250 and ce["seconds_with_start"] == 100
    assert reinforce["delta_per_extra_hour"] == pytest.approx(reinforce["delta"] / (150 / 3600))
    assert reinforce["hardware"] == "GPU (NVIDIA H100)" and reinforce["samples_per_second"] == 20
    assert ce["delta_per_extra_hour"] is None
    # synthetic runs train 0.8 of their seconds over 3 epochs: reinforce 150 s, ce 100 s
    assert reinforce["epoch_seconds"] == pytest.approx(0.8 * 150 / 3)
    # epoch ÷ ce is per training row, whatever rows each run trained on: ce 50 samples/s, reinforce 20
    assert reinforce["epoch_vs_ce"] == pytest.approx(50 / 20) and ce["epoch_vs_ce"] == pytest.approx(1.0)


def test_manifest_and_grid_file(report: tuple[Path, dict[str, Any]]) -> None:
    out, _ = report
    info = json.loads((out / "manifest.json").read_text())
    assert info["data"]["ner"] == [{"kind": "local", "md5": {"test": ["md5-of-ner-test"]}}]
    assert info["metric_signatures"]["translation"][0]["bleu"].startswith("nrefs:1|case:mixed")
    assert info["hardware"] == [{"device": "NVIDIA H100", "platform": "Linux"}]
    assert info["libraries"]["report"]["scipy"] and info["code"]["harness_version"]
    assert info["command"].startswith("python -m harness report --store ")
    assert info["statistics"]["resamples"] == RESAMPLES and info["records"] == {"completed": 45, "failed": 6,
                                                                               "refused": 3}
    grid = load_grid(out / "grid.yaml")
    assert set(grid.tasks) == set(TASKS) and grid.seeds == (1, 2, 3) and "constant_reward" in grid.rewards
    assert len(expand(grid, {t: {} for t in TASKS})) == len(TASKS) * len(grid.rewards) * 3


def test_rewards_with_several_parameter_sets_are_separate_strategies() -> None:
    records = [completed("sentiment", "reinforce", 1, 0.1, reward_params={"alpha": 0.1}),
               completed("sentiment", "reinforce", 1, 0.1, reward_params={"alpha": 0.5}),
               completed("sentiment", "ce", 1, 0.1)]
    assert sorted(strategy_labels(records).values()) == ["ce", "reinforce[alpha=0.1]", "reinforce[alpha=0.5]"]
    assert len(analyse(records, n_resamples=20).cells) == 3


@pytest.fixture(scope="module")
def sentiment_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sentiment") / "store"
    write_store(root, [r for r in grid_records() if r.task == "sentiment"])
    return root


def test_cli_report_writes_every_registered_format(sentiment_store: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    main(["report", "--store", str(sentiment_store), "--out", str(tmp_path / "out"), "--resamples", "50"])
    printed = capsys.readouterr().out
    assert "## sentiment" in printed and "warning: 2 seed(s), fewer than 3, in " in printed
    assert all(f"{name} (" in printed.splitlines()[-1] for name in formats())
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert {"index.html", "summary.json", "manifest.json", "grid.yaml", "methods.md", "runs.csv",
            "overall.tex", "leaderboard_sentiment.md", "plots/forest_sentiment.png"} <= written


@pytest.mark.parametrize("chosen, suffixes", [
    (["--format", "csv"], {".csv"}),
    (["--format", "md", "--format", "latex"], {".md", ".tex"}),
    (["--format", "json,tex,json"], {".json", ".tex"}),
])  # plus manifest.json and grid.yaml, the provenance, whatever the choice
def test_cli_report_writes_only_the_chosen_formats(sentiment_store: Path, tmp_path: Path, chosen: list[str],
                                                   suffixes: set[str]) -> None:
    out = tmp_path / "out"
    main(["report", "--store", str(sentiment_store), "--out", str(out), "--resamples", "50", *chosen])
    written = [p for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "grid.yaml")]
    assert {p.suffix for p in written} == suffixes and not (out / "plots").exists()
    assert (out / "manifest.json").exists() and (out / "grid.yaml").exists()
    if suffixes == {".json", ".tex"}:
        assert sorted(p.name for p in written if p.suffix == ".json") == ["summary.json"]
        assert "--format json,tex" in json.loads((out / "summary.json").read_text())["manifest"]["command"]


@pytest.fixture
def temporary_writer():
    """Registers test-only writers, as a user's own module would, and removes them afterwards."""
    added: list[str] = []

    def add(name: str, write: Any, render: Any = None) -> None:
        register_writer(name, render=render)(write)
        added.append(name)

    yield add
    for name in added:
        unregister_writer(name)


def test_a_users_writer_is_a_report_and_leaderboard_format(sentiment_store: Path, tmp_path: Path, temporary_writer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def write_titles(report, out: Path) -> list[Path]:
        """titles.txt: every table's title."""
        path = out / "titles.txt"
        path.write_text("".join(f"{t.title}\n" for t in report.tables))
        return [path]

    temporary_writer("titles", write_titles, render=lambda tables: "".join(f"{t.title}\n" for t in tables))
    main(["report", "--store", str(sentiment_store), "--out", str(tmp_path / "all"), "--resamples", "50"])
    assert "Leaderboard: sentiment (ranked by test accuracy)" in (tmp_path / "all" / "titles.txt").read_text()
    assert (tmp_path / "all" / "index.html").exists()  # with every built-in format
    main(["report", "--store", str(sentiment_store), "--out", str(tmp_path / "one"), "--resamples", "50",
          "--format", "titles"])
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["grid.yaml", "manifest.json", "titles.txt"]
    capsys.readouterr()
    main(["leaderboard", "--store", str(sentiment_store), "--resamples", "50", "--format", "titles"])
    assert capsys.readouterr().out.splitlines() == ["Overall leaderboard: mean tied rank across tasks",
                                                    "Leaderboard: sentiment (ranked by test accuracy)"]
    main(["list"])
    assert "titles *" in capsys.readouterr().out and "titles" in formats(printable=True)


def test_a_writer_without_render_cannot_be_printed(sentiment_store: Path, temporary_writer,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    temporary_writer("files_only", lambda report, out: [])
    assert "files_only" in formats() and "files_only" not in formats(printable=True)
    with pytest.raises(SystemExit):
        main(["leaderboard", "--store", str(sentiment_store), "--format", "files_only"])
    assert "invalid choice: 'files_only'" in capsys.readouterr().err
    with pytest.raises(ReportError, match="report format 'files_only' cannot be printed; choose from md, tex"):
        print_leaderboards(Store(sentiment_store), fmt="files_only")
    with pytest.raises(ValueError, match="registered twice"):
        register_writer("latex")(lambda report, out: [])


def test_report_of_an_empty_store_raises(tmp_path: Path) -> None:
    """The library raises; only the command line turns the error into an exit status."""
    with pytest.raises(ReportError, match="no run records in"):
        write_report(Store(tmp_path / "empty"), tmp_path / "out", echo=False)
    with pytest.raises(ReportError, match="report format 'xml' is unknown; choose from md, tex, csv"):
        write_report(Store(tmp_path / "empty"), tmp_path / "out", formats="md,xml")
    assert not (tmp_path / "out").exists()


def test_cli_leaderboard_latex_compiles(sentiment_store: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The printed document compiles as it is, its wide leaderboard scaled to the page (no overfull box)."""
    if not shutil.which("pdflatex"):
        pytest.skip("no pdflatex (Debian: apt-get install texlive-latex-base texlive-latex-recommended)")
    main(["leaderboard", "--store", str(sentiment_store), "--format", "latex", "--resamples", "50"])
    (tmp_path / "board.tex").write_text(capsys.readouterr().out)
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "board.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Overfull" not in done.stdout and (tmp_path / "board.pdf").exists()


@pytest.mark.parametrize("fmt", ["md", "tex", "latex", "csv", "json", "html"])
def test_cli_leaderboard_prints_valid_output(sentiment_store: Path, fmt: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    main(["leaderboard", "--store", str(sentiment_store), "--format", fmt, "--resamples", "50"])
    captured = capsys.readouterr()
    printed = captured.out
    assert "warning: 2 seed(s), fewer than 3, in " in captured.err and "warning" not in printed
    if fmt == "md":
        assert "## Overall leaderboard" in printed and "## Leaderboard: sentiment" in printed
        assert len(re.findall(r"(?m)^\|[-|:]+\|$", printed)) == 2
    elif fmt in ("tex", "latex"):
        check_latex(printed)
        assert printed.startswith(r"\documentclass{article}") and printed.rstrip().endswith(r"\end{document}")
        assert printed.count(r"\begin{document}") == 1 and r"\usepackage{booktabs}" in printed
        assert printed.count(r"\begin{tabular}") == 2 and r"\section*{Leaderboard: sentiment" in printed
    elif fmt == "csv":
        assert "#" not in printed
        frame = pd.read_csv(io.StringIO(printed))
        assert frame.columns[0] == "table" and set(frame["table"]) == {"overall", "leaderboard_sentiment"}
        board = frame[frame["table"] == "leaderboard_sentiment"]
        assert set(board["strategy"]) >= {"ce", "reinforce"} and board["mean"].notna().any()
    elif fmt == "json":
        boards = json.loads(printed)
        assert set(boards) == {"overall", "leaderboard_sentiment"}
        assert boards["leaderboard_sentiment"]["title"].startswith("Leaderboard: sentiment")
        assert {row["strategy"] for row in boards["overall"]["rows"]} >= {"ce", "reinforce"}
    else:
        assert check_html(printed) == 2 and "Leaderboard: sentiment" in printed


# ---- seed-aware significance, ranks, calibration and controls on their own small stores -----------

def _board(a: Any, task: str) -> pd.DataFrame:
    from harness.report.tables import leaderboard
    return leaderboard(a, task).display.set_index("strategy")


def test_one_seed_claims_nothing_about_the_strategy() -> None:
    """A strategy with one seed, however far from ce: no p-value, star, arrow or rank, and a note that
    says what can be said (about that run); with one ce seed, no strategy is tested against ce."""
    from harness.report.tables import summary_table
    records = [completed("sentiment", "ce", s, 0.35) for s in (1, 2, 3)]
    records += [completed("sentiment", "reinforce", 1, 0.0)]
    records += [completed("sentiment", "focal", s, 0.3) for s in (1, 2, 3)]
    a = analyse(records, n_resamples=200)
    row = a.comparisons[(a.comparisons["strategy"] == "reinforce") & (a.comparisons["metric"] == "accuracy")].iloc[0]
    assert row["delta"] > 30 and not row["testable"] and not row["significant"] and math.isnan(row["p_holm"])
    assert row["p_run"] < 0.01  # the run itself is far better on this test set: a statement about the run
    board = _board(a, "sentiment")
    assert board.loc["reinforce", "p (Holm)"] == "no test (1 seed)" and "*" not in board.loc["reinforce"].to_string()
    assert board.loc["reinforce", "rank"] == "—" and board.loc["focal", "rank"] != "—"
    assert not summary_table(a).display.loc["sentiment (accuracy)", "reinforce"].endswith(("↑", "↓"))
    (note,) = [n for n in a.notes if n.startswith("one seed in ")]
    assert "sentiment / reinforce" in note and "no significance can be claimed about the strategy" in note

    lone_ce = analyse([completed("sentiment", "ce", 1, 0.35)] + [completed("sentiment", "reinforce", s, 0.0)
                                                                 for s in (1, 2, 3)], n_resamples=100)
    assert not lone_ce.comparisons["testable"].any()
    assert "no test (1 seed)" in _board(lone_ce, "sentiment").loc["reinforce", "p (Holm)"]


def test_a_strategy_significantly_below_ce_never_shares_its_rank() -> None:
    """Strategies from as good as ce to much worse, 3 seeds each, on two tasks: every one the
    leaderboard shows as significantly below ce (its Δ and Holm p) is ranked below ce, and ce holds
    rank 1 alone with strategies it does not differ from."""
    errors = {"ce": 0.1, "focal": 0.11, "dice": 0.14, "soft_f1": 0.18, "entropy": 0.25, "confidence": 0.45}
    records = [completed(task, name, s, e) for task in ("ner", "sentiment") for name, e in errors.items()
               for s in (1, 2, 3)]
    a = analyse(records, n_resamples=300)
    ranks = a.cells.set_index(["task", "strategy"])["rank"]
    below = a.comparisons[a.comparisons["main"] & (a.comparisons["baseline"] == "ce") & a.comparisons["significant"]
                          & (a.comparisons["delta"] < 0)]
    assert len(below) >= 2  # the check is not vacuous
    for task in ("ner", "sentiment"):
        assert ranks[(task, "ce")] == 1
        board = _board(a, task)
        for strategy in below[below["task"] == task]["strategy"]:
            assert ranks[(task, strategy)] > ranks[(task, "ce")]
            assert board.loc[strategy, "p (Holm)"].endswith("*") and board.loc[strategy, "rank"] != "1"
        tied = [s for s in errors if s != "ce" and ranks[(task, s)] == 1]
        assert all(s not in set(below["strategy"][below["task"] == task]) for s in tied)


def test_calibration_in_leaderboards_and_guards(report: tuple[Path, dict[str, Any]]) -> None:
    """label_smoothing has exactly ce's predictions but honest confidences, ce is overconfident:
    ECE, NLL and Brier are lower, significantly (seed-aware, lower is better), with equal accuracy."""
    out, payload = report
    vs_ce = {(c["metric"], c["strategy"]): c for c in payload["comparisons"]
             if c["task"] == "sentiment" and c["baseline"] == "ce"}
    for metric in ("ece", "nll", "brier"):
        c = vs_ce[(metric, "label_smoothing")]
        assert c["significant"] and c["delta"] < 0 and c["ci_high"] < 0 and c["lower_is_better"]
    assert vs_ce[("accuracy", "label_smoothing")]["delta"] == 0
    assert not any(c["metric"] in ("ece", "nll", "brier") for c in payload["comparisons"] if c["task"] == "translation")
    board = (out / "leaderboard_sentiment.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| rank"))
    assert all(f" {m} " in header for m in ("ECE", "NLL", "Brier"))
    smoothing = next(line for line in board.splitlines() if "| label_smoothing " in line)
    assert smoothing.count(" *)") == 3  # three calibration cells, each significantly lower than ce's
    assert "lower is better" in board
    guards = pd.read_csv(out / "guards.csv")
    row = guards[(guards["task"] == "sentiment") & (guards["strategy"] == "label_smoothing")].iloc[0]
    assert row["ece"] < guards[(guards["task"] == "sentiment") & (guards["strategy"] == "ce")].iloc[0]["ece"]
    assert "| ECE " in (out / "guards.md").read_text()
    assert not any(n.startswith("no calibration statistics") for n in payload["notes"])


def test_controls_are_generic_and_ce_continued_gets_its_own_column() -> None:
    """With ce_continued in the store, every strategy started from a checkpoint (reinforce and
    constant_reward here, from ce) is compared with it in its own column; focal, trained from the
    pretrained model, is not; sampling strategies are still compared with constant_reward."""
    records = []
    for task in ("sentiment", "translation"):
        ce = [completed(task, "ce", s, 0.35) for s in (1, 2, 3)]
        records += ce
        records += [completed(task, "ce_continued", s, 0.3, init_from=ce[s - 1].hash) for s in (1, 2, 3)]
        records += [completed(task, "reinforce", s, 0.05, sampling=True, init_from=ce[s - 1].hash) for s in (1, 2, 3)]
        records += [completed(task, "constant_reward", s, 0.35, sampling=True, init_from=ce[s - 1].hash)
                    for s in (1, 2, 3)]
        records += [completed(task, "focal", s, 0.3) for s in (1, 2, 3)]
    a = analyse(records, n_resamples=200)
    main = a.comparisons[a.comparisons["main"]]
    for task in ("sentiment", "translation"):
        assert a.controls(task) == ["constant_reward", "ce_continued"]
        against = set(main[(main["task"] == task) & (main["baseline"] == "ce_continued")]["strategy"])
        assert against == {"reinforce", "constant_reward"}
        assert set(main[(main["task"] == task) & (main["baseline"] == "constant_reward")]["strategy"]) == {"reinforce"}
        board = _board(a, task)
        assert board.loc["ce_continued", "Δ vs ce_continued [95% CI]"] == "control"
        assert board.loc["focal", "Δ vs ce_continued [95% CI]"] == "—"
        assert board.loc["reinforce", "p vs ce_continued (Holm)"].endswith("*")
        assert a.strategies(task)[:3] == ["ce", "constant_reward", "ce_continued"]
    without = analyse([r for r in records if r.reward != "ce_continued"], n_resamples=100)
    assert without.controls("sentiment") == ["constant_reward"]
    assert not any("ce_continued" in column for column in _board(without, "sentiment").columns)


def _proxy_rising(record: Any, rise: float) -> Any:
    """The record with twelve logged steps whose proxy reward climbs by `rise` per step."""
    return dataclasses.replace(record, steps=[{"step": i, "epoch": 1, "rm_reward": rise * i, "reward": 0.3}
                                              for i in range(1, 13)])


@pytest.mark.parametrize("error, rise, flagged", [(0.5, 0.1, True), (0.05, 0.1, False), (0.5, -0.1, False)])
def test_a_reward_that_rose_while_the_score_fell_is_flagged(error: float, rise: float, flagged: bool) -> None:
    """rlhf optimises its reward model's proxy: flagged exactly when the proxy rose over training and
    its test score ended below ce's, the checkpoint it started from."""
    from harness.report.plots import evaluation_curves

    runs = [completed("translation", "ce", s, 0.1) for s in (1, 2, 3)]
    runs += [_proxy_rising(completed("translation", "rlhf", s, error, sampling=True, init_from="ce"), rise)
             for s in (1, 2, 3)]
    a = analyse(runs, n_resamples=200)
    guards = a.guards.set_index("strategy")
    assert guards.loc["rlhf", "reward_rise"] == pytest.approx(rise * (11 - 2))  # steps 10–12 minus steps 1–3
    assert math.isnan(guards.loc["ce", "reward_rise"])
    assert list(a.over_optimised["strategy"]) == (["rlhf"] if flagged else [])
    assert any("rlhf" in n and "over-optimisation" in n for n in a.notes) == flagged
    if flagged:
        row = a.over_optimised.iloc[0]
        assert row["term"] == "rm_reward" and row["metric_change"] < 0 and "vs ce" in row["against"]
    evaluations = a.evaluations
    assert set(evaluations["strategy"]) == {"rlhf"} and len(evaluations) == 9  # 3 seeds × 3 evaluations
    assert (evaluations.groupby("epoch")["validation"].mean().diff().dropna() > 0).all()
    assert evaluation_curves(a, "translation") is not None and evaluation_curves(a, "ner") is None


def test_figure_colours_never_reuse_those_of_ce_and_the_controls() -> None:
    """Strategies beyond the palette's length wrap around it, but never onto ce's or a control's grey,
    and each keeps a distinct colour and marker pair."""
    from harness.report.plots import FIXED_COLOURS, colour, marker

    names = [f"s{i:03d}" for i in range(60)]
    a = SimpleNamespace(strategies=lambda task=None: ["ce", "constant_reward", "ce_continued", *names])
    fixed = set(FIXED_COLOURS.values())
    assert all(colour(a, name) not in fixed for name in names)
    assert len({(colour(a, name), marker(a, name)) for name in names}) == len(names)
    assert [colour(a, name) for name in FIXED_COLOURS] == list(FIXED_COLOURS.values())


def test_curves_need_two_points() -> None:
    """One evaluation per run (one epoch, one logged step) draws no curve: a lone point is no curve."""
    from harness.report.plots import learning_curves, sampling_curves

    records = [completed("translation", name, s, 0.2, sampling=name == "reinforce") for name in ("ce", "reinforce")
               for s in (1, 2)]
    one_point = [dataclasses.replace(r, history=r.history[:1], steps=r.steps[:1]) for r in records]
    a = analyse(one_point, n_resamples=20)
    assert learning_curves(a, "translation") is None and sampling_curves(a, "translation") is None
    assert learning_curves(analyse(records, n_resamples=20), "translation") is not None


def test_forest_plot_marks_missing_cells_and_draws_zero_differences(report: tuple[Path, dict[str, Any]]) -> None:
    """dice was refused on translation: named, not drawn; label_smoothing has exactly ce's predictions:
    its Δ of 0 is a visible point at 0, not nothing. The cost chart is in minutes."""
    import matplotlib.pyplot as plt
    from harness.report.plots import cost_chart, forest_plot

    out, payload = report
    a = analyse(list(Store(out.parent / "store").records()), n_resamples=50)
    fig = forest_plot(a, "translation")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == [s for s in a.strategies("translation") if s != "ce"]
    assert "refused" in " ".join(t.get_text() for t in ax.texts)
    y = names.index("label_smoothing")
    points = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o"]
    assert (0.0, y) in points
    assert "*" in [t.get_text() for t in ax.texts]  # reinforce is significantly above ce
    plt.close(fig)
    fig = cost_chart(a)
    reinforce = next(c for c in payload["cost"] if c["task"] == "ner" and c["strategy"] == "reinforce")
    offsets = [tuple(o) for coll in fig.axes[0].collections for o in coll.get_offsets()]
    assert (pytest.approx(reinforce["seconds_with_start"] / 60), pytest.approx(reinforce["score"])) in offsets
    assert fig.axes[0].get_xlabel().startswith("minutes")
    plt.close(fig)
