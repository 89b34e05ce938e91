"""Compares two stores' records cell by cell: what a refactoring must leave unchanged.

usage: python benchmarks/compare_stores.py STORE_A STORE_B
Prints every difference in status, test and validation scores, best epoch, start checkpoint,
per-epoch training terms, logged steps and test predictions, and exits 1 when there is one.
"""
from __future__ import annotations

import sys

from harness.store import Store


def main(a: str, b: str) -> int:
    left = {r.hash: r for r in Store(a).records()}
    right = {r.hash: r for r in Store(b).records()}
    print(f"records: {len(left)} and {len(right)}; same run hashes: {set(left) == set(right)}")
    differences = 0
    for run_hash in sorted(set(left) & set(right)):
        x, y = left[run_hash], right[run_hash]
        fields = {"status": (x.status, y.status), "test": (x.test, y.test), "validation": (x.validation, y.validation),
                  "best_epoch": (x.best_epoch, y.best_epoch), "init_from": (x.init_from, y.init_from),
                  "training terms": ([e["train"] for e in x.history], [e["train"] for e in y.history]),
                  "steps": (x.steps, y.steps),
                  "predictions": ([e["prediction"] for e in x.test_examples], [e["prediction"] for e in y.test_examples])}
        for name, (u, v) in fields.items():
            if u != v:
                differences += 1
                print(f"differs: {x.task} {x.reward} seed {x.seed}: {name}")
    print(f"compared {len(set(left) & set(right))} cells: {differences} differences")
    return int(differences > 0 or set(left) != set(right))


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
