"""Time one batch's K samples drawn two ways from a real checkpoint: `generate(do_sample=True)`, whose
`torch.multinomial` draws one exponential per vocabulary entry, and the harness's draw
(`kinds.sequences.InverseCDFDraw` under greedy decoding, the encoder run once per input).

It reuses the `ce` checkpoint that `benchmarks/epoch_cost.yaml` leaves in its store, on the first
training batch of the epoch-cost `reinforce` run, so run that grid first. Run it alone (it times):

    python benchmarks/sampler_cost.py --task translation [--bf16] [--store runs-epoch-cost]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import LogitsProcessorList

from harness.config import load_grid
from harness.grid.plan import make_plan
from harness.run.data import DataSource, default_data_dir
from harness.run.recipe import prepare
from harness.store import Store
from kinds.sequences import GREEDY, InverseCDFDraw

GRID = Path(__file__).with_name("epoch_cost.yaml")
MULTINOMIAL = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0)


def time_draws(name: str, draw: Callable[[], torch.Tensor], bf16: bool, repeats: int) -> None:
    for rep in range(repeats):
        torch.manual_seed(rep)
        started = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = draw()
        seconds = time.perf_counter() - started
        print(f"{name:12s} repeat {rep}: {seconds:6.2f} s for {out.shape[1]} token steps, "
              f"{seconds / out.shape[1] * 1000:4.0f} ms per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="translation", choices=["translation", "summarization"])
    parser.add_argument("--store", default="runs-epoch-cost")
    parser.add_argument("--samples", type=int, default=4, help="K samples per input")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="draw under bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    source = DataSource(data_dir=default_data_dir())
    store = Store(args.store)
    plan = make_plan(load_grid(GRID), source, store, [args.task], ["reinforce"], [1])
    cfg = next(c.config for c in plan.cells if c.config.reward == "reinforce")
    setup = prepare(cfg, store, source, torch.device("cpu"))
    model, kind, policy = setup.model.eval(), setup.kind, setup.ctx.policy
    batch: dict[str, Any] = next(setup.data["train"].iterate(torch.Generator().manual_seed(1)))
    length = policy.sample_length(batch)
    print(f"{args.task}: {batch['input_ids'].shape[0]} inputs x K = {args.samples}, at most {length} new tokens, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    time_draws("multinomial", lambda: kind.generate(model, batch, num_beams=1, num_return_sequences=args.samples,
                                                    max_new_tokens=length, **MULTINOMIAL), args.bf16, args.repeats)
    time_draws("inverse CDF", lambda: kind.generate(model, kind.repeat(model, batch, args.samples), num_beams=1,
                                                    max_new_tokens=length, **GREEDY,
                                                    logits_processor=LogitsProcessorList([InverseCDFDraw()])),
               args.bf16, args.repeats)


if __name__ == "__main__":
    main()
