#!/usr/bin/env bash
# Quality parity and speed at the `cpu` preset's budgets (issue 11): `harness bench` on every task,
# 3 seeds, the harness against the Trainer's default, its group_by_length configuration and (on a CPU
# with bf16 instructions) that with bf16. One task at a time, two threads, nothing else running:
# the figures are timings. A task whose JSON exists is skipped; a stopped task resumes from its
# finished measurements (TASK.json.partial.jsonl, commit it to resume in another session).
#   bash benchmarks/parity_cpu.sh [TASK ...]        (default: all four; BENCHMARKS.md has the table)
set -euo pipefail
cd "$(dirname "$0")/.."
out=results/bench-cpu
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
for task in "${@:-ner sentiment translation summarization}"; do
  for t in $task; do
    if [[ -s "$out/$t.json" ]]; then echo "$t: $out/$t.json exists, skipped"; continue; fi
    echo "$t: load average $(cut -d' ' -f1-3 /proc/loadavg) at the start"
    .venv/bin/python -m harness bench --task "$t" --preset cpu --seeds 1,2,3 --json "$out/$t.json" \
      | tee "$out/$t.txt"
  done
done
