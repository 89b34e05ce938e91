"""`--help` and `list` answer at once: they import neither torch nor transformers (the catalogue
stands in for the registries), and the catalogue matches the registries it is generated from."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from harness import catalog

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import sys, contextlib, io\n"
         "from harness.cli import main\n"
         "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
         "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
         "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))\n"
         "print(out.getvalue())\n")


def _probe(*argv: str) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    first, _, rest = done.stdout.partition("\n")
    return eval(first), rest  # noqa: S307 (our own printed list)


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["report", "--help"], ["list"], ["list", "--json"]])
def test_no_torch_for_help_and_list(argv):
    heavy, out = _probe(*argv)
    assert heavy == [], f"{' '.join(argv)} imported {heavy}"
    assert out.strip()


@pytest.mark.parametrize("argv", [["--help"], ["list"]])
def test_under_a_second_of_cpu_time(argv):
    """The interpreter's own start-up included (about 0.1 s here, against 2-3 s with torch)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "harness", *argv], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                   capture_output=True, check=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) < 1.0


def test_list_json_matches_the_text_listing():
    _, out = _probe("list", "--json")
    info = json.loads(out)
    assert {t["name"] for t in info["tasks"]} >= {"ner", "sentiment", "translation", "summarization"}
    focal = next(r for r in info["rewards"] if r["name"] == "focal")
    assert focal["params"][0]["name"] == "gamma" and focal["params"][0]["default"] == 2.0 and focal["summary"]
    assert {p["name"] for p in info["presets"]} >= {"smoke", "default"}
    assert any(f["name"] == "md" and f["printable"] for f in info["formats"])


def test_catalogue_is_up_to_date():
    """Fails after a task, strategy, parameter, model alias or report format changes: regenerate
    it with `python -m harness.catalog`."""
    live = json.loads(json.dumps(catalog.build(), default=str))
    assert catalog.load() == live, "stale harness/catalog.json: run `python -m harness.catalog`"
