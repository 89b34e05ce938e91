"""The layers import in one direction only, and no code outside the kind modules branches on a kind.

tasks (declarations) ← kinds ← rewards ← harness.run ← harness.grid; harness.report reads stored
records and never imports a run or a grid. Every import counts, also those inside functions.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> packages it must never import
FORBIDDEN = {
    "tasks": ("kinds", "rewards", "harness"),
    "kinds": ("rewards", "harness"),
    "rewards": ("harness",),
    "harness.run": ("harness.grid", "harness.report"),
    "harness.grid": ("harness.report",),
    "harness.report": ("harness.run", "harness.grid"),
}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute names."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_one_way(package: str) -> None:
    folder = ROOT / package.replace(".", "/")
    bad = []
    for path in sorted(folder.rglob("*.py")):
        for name in imports(path):
            for forbidden in FORBIDDEN[package]:
                if _inside(name, forbidden) and not (package == "harness" and _inside(name, "harness")):
                    bad.append(f"{_module(path)} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_kind_branches_outside_the_kind_modules() -> None:
    """`grep -rn "kind ==" harness tasks rewards` finds nothing: kinds dispatch through the protocol."""
    pattern = re.compile(r"kind\s*(==|!=)|kind\s+(not\s+)?in\s*[(\[{]")
    hits = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
            for folder in ("harness", "tasks", "rewards") for path in sorted((ROOT / folder).rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)
