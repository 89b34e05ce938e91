"""The report's HTML page: its header and banners, and the page itself in headless Chromium (driven
by Playwright, `pip install -e '.[page]'`, using the system browser, Debian `apt-get install
chromium`): it loads without a console error, every table sorts when a header is clicked, wide
tables keep their first columns in view, and a screenshot is kept as a CI artifact
($HARNESS_ARTIFACTS, default artifacts/). Skipped where no Chromium or Playwright is installed,
except under HARNESS_REQUIRE_BROWSER=1 (set by .ci/run), where that fails."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.report.analysis import analyse
from harness.report.page import banners, grid_name
from harness.report.writers import write_report
from tests.synthetic import completed, write_store

REPO = Path(__file__).resolve().parent.parent
SMOKE_RUN = "python -m harness run --grid --preset smoke --store /tmp/store --quiet"


def _session(command: str) -> dict[str, Any]:
    return {"started": "2026-01-01T00:00:00+00:00", "command": command, "executor": "local", "runs": 1}


def _manifest(command: str, max_train: int | None) -> dict[str, Any]:
    settings = {} if max_train is None else {"max_train": max_train}
    return {"sessions": [_session(command)], "grid": {"train": {"per_task": {"sentiment": settings}}}}


def test_grid_name_comes_from_the_run_sessions() -> None:
    assert grid_name(_manifest(SMOKE_RUN, None)) == "smoke"
    assert grid_name(_manifest("python -m harness run --grid --grid-file grids/big.yaml", None)) == "big"
    assert grid_name({"sessions": []}).startswith("unknown")


@pytest.mark.parametrize("command, max_train, seeds, expected", [
    (SMOKE_RUN, None, 3, ["pipeline"]),
    ("python -m harness run --grid --preset default", 64, 3, ["pipeline"]),  # tiny slices, whatever the name
    ("python -m harness run --grid --preset default", None, 3, []),
    ("python -m harness run --grid --preset default", 20000, 2, ["power"]),
    (SMOKE_RUN, 64, 1, ["pipeline", "power"]),
])
def test_banners_say_when_results_cannot_rank_strategies(command: str, max_train: int | None, seeds: int,
                                                          expected: list[str]) -> None:
    a = analyse([completed("sentiment", name, s, 0.2) for name in ("ce", "focal") for s in range(1, seeds + 1)],
                n_resamples=20)
    info = _manifest(command, max_train)
    found = banners(a, info, grid_name(info))
    assert [b.kind for b in found] == expected
    if "power" in expected:
        assert "2 of 2 completed cells have fewer than 3 seeds" in found[-1].text


# ---- in the browser -----------------------------------------------------------------------

REQUIRED = os.environ.get("HARNESS_REQUIRE_BROWSER") == "1"


def _missing(why: str) -> None:
    (pytest.fail if REQUIRED else pytest.skip)(why)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright on the system binary)."""
    path = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if path is None:
        _missing("no Chromium binary on PATH (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -e '.[page]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page")
    store = write_store(root / "store")
    store.save_session(_session(SMOKE_RUN))
    write_report(store, root / "out", echo=False, n_resamples=100, formats=["html"])
    return root / "out" / "index.html"


def sort_key(text: str) -> tuple[int, float, str]:
    """The page script's order: by the first number (after an optional # or [), then words, then empty cells."""
    text = text.strip()
    match = re.match(r"^[#\[]?([+-]?\d+(?:\.\d+)?(?:e[+-]?\d+)?)", text, re.IGNORECASE)
    if match:
        return 0, float(match.group(1)), ""
    return (2 if text in ("", "—") else 1), 0.0, text


def _column(table: Any, col: int) -> list[str]:
    return table.locator("tbody tr").evaluate_all(
        f"rows => rows.map(r => r.cells[{col}].textContent.trim())")


def _check_sorts(table: Any) -> str:
    """Clicks the first column whose cells are not already in order; checks ascending, then
    descending (words and empty cells staying last). Returns the header clicked."""
    headers = table.locator("thead th")
    for col in range(headers.count()):
        before = _column(table, col)
        numbers = [sort_key(v) for v in before if sort_key(v)[0] == 0]
        if len(numbers) >= 2 and numbers != sorted(numbers):
            break
    else:
        pytest.fail(f"no column of table {table.get_attribute('id')} is out of order")
    headers.nth(col).click()
    ascending = _column(table, col)
    assert sorted(ascending) == sorted(before) and ascending != before
    keys = [sort_key(v) for v in ascending]
    assert keys == sorted(keys, key=lambda k: (k[0], k[1]))
    headers.nth(col).click()
    descending = [sort_key(v) for v in _column(table, col)]
    groups = [k[0] for k in descending]
    assert groups == sorted(groups)  # numbers first, then words, then empty, in either direction
    values = [k[1] for k in descending if k[0] == 0]
    assert values == sorted(values, reverse=True)
    return headers.nth(col).text_content()


def test_page_in_headless_chromium(chromium: Any, page_file: Path) -> None:
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_file.as_uri())
    page.wait_for_load_state("load")

    header = page.locator("header").inner_text()
    assert "Grid smoke" in header and "commit" in header
    assert "Pipeline check" in header and "Under-powered" in header
    ids = page.locator("[id]").evaluate_all("nodes => nodes.map(n => n.id)")
    assert len(ids) == len(set(ids))
    for link in page.locator("nav.toc a").all():  # every contents entry leads to a section
        assert page.locator(link.get_attribute("href")).count() == 1
    assert page.locator("img").count() >= 10
    assert page.locator("img").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#task-sentiment figure").first.get_attribute("id") == "figure-forest_sentiment"
    assert not page.locator("details#manifest, #manifest details").first.evaluate("d => d.open")

    artifacts = Path(os.environ.get("HARNESS_ARTIFACTS", REPO / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(artifacts / "report-page.png"), full_page=True)
    assert (artifacts / "report-page.png").read_bytes().startswith(b"\x89PNG")

    tables = page.locator("table.sortable")
    assert tables.count() == 9  # every table of the report, the seed-paired sensitivity table included
    for i in range(tables.count()):
        _check_sorts(page.locator("section.table").nth(i))

    # A leaderboard wider than the window keeps rank and strategy in view when scrolled sideways.
    board = page.locator("#table-leaderboard_sentiment")
    scroller = board.locator(".scroll")
    assert scroller.evaluate("s => s.scrollWidth > s.clientWidth")
    strategy = board.locator("tbody tr").first.locator("td").nth(1)
    x = strategy.bounding_box()["x"]
    scroller.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    assert strategy.bounding_box()["x"] == pytest.approx(x, abs=1)
    assert board.locator("tbody tr").first.locator("td").nth(4).bounding_box()["x"] < x  # the rest scrolled
    assert errors == []
    page.close()
