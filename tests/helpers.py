"""Shared test helpers: tiny grids over slices of the real data, and reward-parameter checks."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import RunConfig, load_grid
from harness.grid.plan import expand
from harness.run.data import DataSource
from rewards.base import RewardStrategy, build_reward
from tasks.base import get_task


def write_grid(path: Path, tasks: list[str], rewards: Any = ("ce",), seeds: tuple[int, ...] = (1,),
               **train: Any) -> Path:
    """A grid of tiny random models on the first rows of the real data."""
    settings = {"model": "tiny-bert", "epochs": 2, "batch_size": 8, "eval_batch_size": 16, "lr": 1e-3,
                "max_train": 32, "max_eval": 16, "log_every": 2, **train}
    per_task = {t: {"model": "tiny-bert2bert", "max_new_tokens": 8} for t in tasks
                if get_task(t).kind == "seq2seq"}
    grid = {"name": "tiny", "tasks": tasks, "rewards": list(rewards) if not isinstance(rewards, dict) else rewards,
            "seeds": list(seeds), "train": {**settings, "per_task": per_task}}
    path.write_text(yaml.safe_dump(grid))
    return path


def configs(grid_path: Path, data_dir: Path) -> tuple[list[RunConfig], DataSource]:
    grid = load_grid(grid_path)
    source = DataSource(data_dir=data_dir)
    return expand(grid, {t: source.describe(get_task(t)) for t in grid.tasks}), source


def check_declared_params(name: str) -> RewardStrategy:
    """Every parameter of strategy `name` has help text, and a value below its minimum is refused
    with an error naming it; returns the strategy built with its defaults."""
    strategy = build_reward(name)
    for f in dataclasses.fields(strategy):
        assert f.metadata["help"], f"{name}.{f.name} has no help text"
        if f.metadata["min"] is not None:
            with pytest.raises(ValueError, match=f.name):
                build_reward(name, {f.name: f.metadata["min"] - 1})
    return strategy


def check_chunked_scoring(policy: Any, model: Any, batch: dict[str, Any], num_samples: int) -> None:
    """`SequencePolicy.scored` in chunks of 2 samples, each cut to its longest, gives the log-probabilities
    and the gradients of one pass over all samples padded to the longest (the decoder is causal)."""
    import torch

    model.eval()  # no dropout: both passes see the same function
    torch.manual_seed(3)
    samples = policy.sample(model, batch, None, num_samples=num_samples)
    count, width = samples.actions.shape
    assert count > 2 and width > 2
    # Samples of 1..width actions, as if ended there (random tiny models rarely end on their own).
    ended = torch.arange(width) < ((2 * torch.arange(count) + 1) % width + 1).unsqueeze(-1)  # not sorted
    samples = dataclasses.replace(samples, mask=samples.mask & ended)
    assert samples.mask.sum(-1).unique().numel() > 2, "chunks of different widths"
    results = []
    for chunk in (10 ** 6, 2):
        policy.chunk = chunk
        model.zero_grad()
        scored = policy.log_prob(model, batch, samples)
        scored.logprob.sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((scored, grads))
    (whole, whole_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked.token_logprob, whole.token_logprob, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked.logprob, whole.logprob, atol=1e-4, rtol=1e-5)
    assert len(chunked_grads) == len(whole_grads) > 0
    for got, want in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
