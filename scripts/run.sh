#!/usr/bin/env bash
# The main job: the grid (the `default` preset on a GPU, `smoke` on a CPU), then the report.
# Extra arguments go to `harness run`, e.g. `scripts/run.sh --preset default --task ner`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/python -m harness run --grid "$@"
.venv/bin/python -m harness report
