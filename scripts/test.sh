#!/usr/bin/env bash
# The test suite (CPU, minutes), on small slices of the real data in $HARNESS_DATA_DIR (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export HARNESS_CACHE=${HARNESS_CACHE:-$PWD/.cache/harness}
exec .venv/bin/python -m pytest -q "$@"
