"""Sampling strategies train without dropout (a recorded setting), so at θ = θ_old = θ_ref the
recipe's own steps give KL = 0, PPO ratio = 1 and DPO loss = log 2; the KL estimate is k3."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from harness.config import with_parent
from harness.run.recipe import TrainState, prepare, run, train_epoch
from harness.store import Store
from rewards._sampling import kl_estimate
from rewards.base import REWARDS, Samples, build_reward
from tests.helpers import configs, write_grid

SAMPLING = sorted(name for name, cls in REWARDS.items() if cls.family == "sampling")


def frozen_steps(tmp_path, data_dir, task: str, reward: str, **train) -> tuple[list[dict], bool]:
    """The logged terms of every step of one epoch at learning rate 0 (θ never moves), as the recipe
    runs it: its train mode, its rollouts and its updates; and whether the model trained with dropout."""
    grid = write_grid(tmp_path / "g.yaml", [task], rewards=["ce", reward], epochs=1, batch_size=4, max_train=8,
                      max_eval=4, log_every=1, **train)
    cfgs, source = configs(grid, data_dir)
    # lr 0 is refused in a grid (harness.validate); here it is the point, so set past the check
    cfgs = [with_parent(dataclasses.replace(c, settings=dataclasses.replace(c.settings, lr=0.0))) for c in cfgs]
    store = Store(tmp_path / "s")
    if REWARDS[reward].init_from:  # its parent's checkpoint first, as the grid orders them
        run(next(c for c in cfgs if c.reward == REWARDS[reward].init_from), store, source, progress=False)
    cfg = next(c for c in cfgs if c.reward == reward)
    setup = prepare(cfg, store, source, torch.device("cpu"))
    setup.strategy.start(setup.ctx)
    state = TrainState(generator=torch.Generator().manual_seed(0))
    train_epoch(setup, 1, state, progress=False)
    assert setup.model.training == setup.dropout
    return state.step_log, setup.dropout


@pytest.mark.parametrize("task", ["ner", "translation"])
@pytest.mark.parametrize("reward", SAMPLING)
def test_policy_is_its_reference_at_the_start(tmp_path, data_dir, task, reward):
    steps, dropout = frozen_steps(tmp_path, data_dir, task, reward)
    assert not dropout and steps
    for step in steps:
        assert abs(step["kl"]) < 1e-5, step
        if "ratio_deviation" in step:  # PPO-style strategies: ρ = π_θ/π_old = 1
            assert step["ratio_deviation"] < 1e-5 and step["clip_fraction"] == 0, step
        if "dpo" in step:  # pairs may all be ties (no preference, no loss); else log 2 at θ = θ_ref
            assert step["dpo"] == pytest.approx(math.log(2) if step["pairs"] else 0.0, abs=1e-5), step


@pytest.mark.parametrize("reward", ["dpo", "online_dpo"])
def test_dpo_loss_is_log_2_at_the_reference(tmp_path, data_dir, reward):
    """On labels, two samples often differ: the loss of every stated preference is log 2 at θ = θ_ref."""
    steps, _ = frozen_steps(tmp_path, data_dir, "sentiment", reward)
    assert all(s["pairs"] > 0 for s in steps)
    assert all(s["dpo"] == pytest.approx(math.log(2), abs=1e-6) and abs(s["kl"]) < 1e-6 for s in steps), steps


def test_dropout_is_a_recorded_setting_that_matters(tmp_path, data_dir):
    """With `policy_dropout: true` the policy's scoring is noisy and DPO's loss leaves log 2 at θ = θ_ref."""
    steps, dropout = frozen_steps(tmp_path, data_dir, "sentiment", "dpo", policy_dropout=True)
    assert dropout
    assert any(abs(s["dpo"] - math.log(2)) > 1e-4 for s in steps)
    assert build_reward("ce").policy_dropout and not build_reward("reinforce").policy_dropout


def test_k3_is_non_negative_unbiased_and_zero_at_equality():
    torch.manual_seed(0)
    logits, ref_logits = torch.randn(3), torch.randn(3)
    p, r = logits.log_softmax(-1), ref_logits.log_softmax(-1)
    actions = torch.distributions.Categorical(logits=logits).sample((200_000,))
    mask = torch.ones_like(actions, dtype=torch.bool)
    index = torch.zeros_like(actions)
    policy = Samples(actions, mask, p[actions], p[actions], index)
    reference = Samples(actions, mask, r[actions], r[actions], index)
    k3 = kl_estimate(policy, reference)
    assert (k3 >= 0).all()
    exact = (p.exp() * (p - r)).sum()
    torch.testing.assert_close(k3.mean(), exact, atol=5e-3, rtol=0)
    assert kl_estimate(policy, policy).abs().max() == 0


@pytest.mark.parametrize("reward, every_step", [("reinforce", False), ("rloo", True)])
def test_a_diagnostic_kl_costs_a_reference_pass_only_on_logged_steps(tmp_path, data_dir, reward, every_step):
    """reinforce's KL is a diagnostic: computed on the logged steps (every `log_every`, and the epoch's
    last), and its epoch mean averages those steps; rloo's reward holds the KL, so every step has it."""
    grid = write_grid(tmp_path / "g.yaml", ["translation"], rewards=["ce", reward], epochs=1, batch_size=4,
                      max_train=16, max_eval=4, log_every=3)
    cfgs, source = configs(grid, data_dir)
    cfgs = [with_parent(c) for c in cfgs]
    store = Store(tmp_path / "s")
    run(next(c for c in cfgs if c.reward == "ce"), store, source, progress=False)
    setup = prepare(next(c for c in cfgs if c.reward == reward), store, source, torch.device("cpu"))
    seen = []
    loss = setup.strategy.loss

    def recording(logits, batch, ctx):
        out = loss(logits, batch, ctx)
        seen.append((ctx.step, ctx.diagnose, float(out.terms["kl"]) if "kl" in out.terms else None))
        return out

    setup.strategy.loss = recording
    means = train_epoch(setup, 1, TrainState(generator=torch.Generator().manual_seed(0)), progress=False)
    assert [(step, diagnose) for step, diagnose, _ in seen] == [(0, False), (1, False), (2, True), (3, True)]
    assert all((kl is not None) == (every_step or diagnose) for _, diagnose, kl in seen), seen
    computed = [kl for _, _, kl in seen if kl is not None]
    assert means["kl"] == pytest.approx(sum(computed) / len(computed))
