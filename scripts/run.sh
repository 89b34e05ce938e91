#!/usr/bin/env bash
# The main job: a grid, then its report and leaderboards. On a GPU the `default` preset (the full
# benchmark); without one the `quick` preset (sentiment, 7 strategies, 3 seeds: under 30 minutes on
# two cores). Extra arguments go to `harness run`, e.g. `scripts/run.sh --preset cpu` (every task and
# strategy on a CPU, about 12 h, resumable) or `scripts/run.sh --preset default --task ner`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
store=${HARNESS_STORE:-runs}
.venv/bin/python -m harness run --grid --store "$store" "$@"
.venv/bin/python -m harness report --store "$store" --out reports/latest
.venv/bin/python -m harness leaderboard --store "$store"
cat <<EOF

The full report (tables in every format, the HTML page, methods, manifest): reports/latest/index.html
Every task and strategy on this CPU, about 12 hours, resumable: bash scripts/run.sh --preset cpu
The full benchmark, on a GPU:                                 bash scripts/run.sh --preset default
Published results: results/README.md
EOF
