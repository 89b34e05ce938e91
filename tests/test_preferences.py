"""Simulated feedback, RLHF and DPO: the annotator's stated noise model, the fixed preference set from
the starting policy, the reward model trained on it and then frozen, PPO with the adaptive KL controller."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import kinds

from rewards._preferences import Annotator, build_preferences
from rewards.rlhf import AdaptiveKLController, whiten
from tests.test_rewards_sampling import (Bandit, bandit_batch, bandit_task, make_ctx, real_setup, run_steps,
                                         started, train_batch)


@pytest.fixture(scope="module")
def tokenizer():
    from harness.run.models import load_tokenizer
    return load_tokenizer("tiny-bert")


# ---- the annotator --------------------------------------------------------------------------------

def test_annotator_is_bradley_terry_with_temperature_then_flips() -> None:
    torch.manual_seed(0)
    n = 20_000
    scores = torch.tensor([0.4, 0.5] * n + [0.3, 0.3])  # the second sample is better by 0.1; then a tie
    clean = Annotator(temperature=0.0, flip_rate=0.0).judge(scores)
    assert (clean.chosen[:-1] == 1).all() and clean.valid[:-1].all() and not clean.valid[-1]
    bt = Annotator(temperature=0.1, flip_rate=0.0).judge(scores)
    p = torch.sigmoid(torch.tensor(0.1 / 0.1)).item()  # σ(Δm/τ)
    assert abs(bt.chosen[:-1].float().mean().item() - p) < 0.015
    noisy = Annotator(temperature=0.1, flip_rate=0.2).judge(scores)
    assert abs(noisy.chosen[:-1].float().mean().item() - (p * 0.8 + (1 - p) * 0.2)) < 0.015
    assert torch.equal(noisy.better, clean.better), "the noise-free order is kept beside the noisy choice"


# ---- the fixed preference set ---------------------------------------------------------------------

@pytest.mark.parametrize("task_name", ["ner", "sentiment", "translation"])
def test_preference_set_is_sampled_once_from_the_starting_policy(task_name, tokenizer) -> None:
    model, batch, ctx = real_setup(task_name, tokenizer)
    annotator = Annotator(0.05, 0.1)
    prefs = build_preferences(ctx, annotator, inputs=0, heldout=0.0, features=True)
    again = build_preferences(ctx, annotator, inputs=0, heldout=0.0, features=True)
    assert sorted(prefs.rows) == [0, 1, 2] and prefs.features.shape[:2] == (3, 2)
    assert all(torch.equal(a, b) for a, b in zip(prefs.actions, again.actions)), "seeded by the run's seed"
    assert torch.equal(prefs.judged.chosen, again.judged.chosen)
    # re-laid out for a batch, the pairs score under the reference as they did when they were drawn
    samples, which, where = prefs.pair_samples(batch, ctx.kind.generates)
    assert samples.actions.shape[0] == 6 and torch.equal(prefs.scores[which].flatten(), ctx.policy.score(samples, batch))
    assert set(prefs.terms(torch.device("cpu"))) == {"preference_pairs", "preference_heldout", "preference_ties",
                                                      "annotator_agreement"}


# ---- RLHF: reward model, then PPO with the adaptive KL controller ---------------------------------------

def test_adaptive_kl_controller_moves_beta_toward_the_target() -> None:
    above = AdaptiveKLController(torch.tensor(0.1), target=1.0, horizon=100.0)
    above.update(torch.tensor(1.5), n=10)  # KL too high: raise β, by at most 20 %·n/H
    torch.testing.assert_close(above.value, torch.tensor(0.1 * (1 + 0.2 * 10 / 100)))
    below = AdaptiveKLController(torch.tensor(0.1), target=1.0, horizon=100.0)
    below.update(torch.tensor(0.9), n=10)  # KL too low: lower β proportionally
    torch.testing.assert_close(below.value, torch.tensor(0.1 * (1 - 0.1 * 10 / 100)))
    on_target = AdaptiveKLController(torch.tensor(0.1), target=1.0, horizon=100.0)
    on_target.update(torch.tensor(1.0), n=10)
    torch.testing.assert_close(on_target.value, torch.tensor(0.1))


def test_advantages_are_whitened() -> None:
    advantage = whiten(torch.tensor([0.3, 1.2, -0.4, 2.0, 0.0]))
    torch.testing.assert_close(advantage.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(advantage.std(unbiased=False), torch.tensor(1.0), atol=1e-5, rtol=0)
    assert whiten(torch.tensor([0.7])).item() == 0


def test_reward_model_is_trained_on_the_preferences_then_frozen() -> None:
    """On the bandit a clean annotator's preferences are learnable: held-out accuracy 1, logged with every
    step; PPO then never changes the reward model."""
    torch.manual_seed(0)
    model = Bandit(bias=(0.0, 0.0))
    ctx = make_ctx(bandit_task(), model)
    strategy = started("rlhf", ctx, {"temperature": 0.0, "flip_rate": 0.0, "heldout": 0.3, "rm_lr": 0.01,
                                     "rm_epochs": 100})
    rm = [p.detach().clone() for p in strategy.rm.parameters()]
    assert not any(p.requires_grad for p in strategy.rm.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    outs = []
    for step in range(3):
        outs += train_batch(strategy, model, bandit_batch(offset=8 * step), ctx, optimizer, step * strategy.updates)
    assert all(torch.equal(a, b) for a, b in zip(rm, strategy.rm.parameters())), "the reward model is frozen"
    assert all(out.terms["rm_heldout_accuracy"] == 1.0 == out.terms["rm_heldout_true_accuracy"] for out in outs)
    assert outs[0].terms["preference_heldout"] > 0 and outs[0].terms["annotator_agreement"] == 1.0
    assert outs[0].terms["ratio_deviation"] == 0 < outs[1].terms["ratio_deviation"], "PPO epochs over one rollout"
    assert outs[0].terms["kl_coef"] == 0.1 and outs[-1].terms["kl_coef"] != 0.1, "β adapts after each rollout"


def test_rlhf_logs_proxy_and_true_reward_on_a_seq2seq_task(tokenizer) -> None:
    model, batch, ctx = real_setup("translation", tokenizer)
    outs = run_steps("rlhf", model, batch, ctx, steps=1, params={"updates": 2})
    assert {"rm_reward", "reward", "kl", "kl_coef", "rm_heldout_accuracy"} <= set(outs[0].terms)
    assert len(outs) == 2


def test_rlhf_and_dpo_learn_from_the_same_preference_set(tokenizer) -> None:
    model, batch, ctx = real_setup("ner", tokenizer)
    torch.manual_seed(123)  # whatever ran before, the set depends on the run's seed only
    rlhf = started("rlhf", ctx)
    torch.rand(7)
    dpo = started("dpo", dataclasses.replace(ctx))
    assert rlhf.prefs.rows == dpo.prefs.rows and torch.equal(rlhf.prefs.heldout, dpo.prefs.heldout)
    assert torch.equal(rlhf.prefs.judged.chosen, dpo.prefs.judged.chosen)
    assert all(torch.equal(a, b) for a, b in zip(rlhf.prefs.actions, dpo.prefs.actions))


# ---- DPO, offline on the fixed set ---------------------------------------------------------------------

def test_dpo_learns_from_the_pairs_of_the_batch_inputs_only() -> None:
    torch.manual_seed(0)
    model = Bandit(bias=(0.0, 0.0))
    ctx = make_ctx(bandit_task(), model)
    strategy = started("dpo", ctx, {"heldout": 0.5, "temperature": 0.0, "flip_rate": 0.0})
    prefs = strategy.prefs
    assert len(prefs.rows) == 64 and 20 < int(prefs.heldout.sum()) < 44
    for offset in (0, 8, 16):
        batch = bandit_batch(offset=offset)
        out = strategy.loss(kinds.forward(model, batch), batch, ctx)
        rows = [prefs.by_row[r] for r in range(offset, offset + 8)]
        assert out.terms["pairs"] == int(prefs.trainable[rows].sum()), "trainable pairs of these inputs only"
        assert out.terms["preference_pairs"] == int(prefs.trainable.sum())
        assert out.terms["kl"] == 0 and out.terms["sample_length"] == 1


def test_kl_from_reference_samples_is_unbiased_and_non_negative() -> None:
    from rewards._sampling import kl_from_reference_samples
    from rewards.base import Samples
    torch.manual_seed(1)
    p, r = torch.randn(4).log_softmax(-1), torch.randn(4).log_softmax(-1)
    actions = torch.distributions.Categorical(logits=r).sample((400_000,))  # drawn from the reference
    ones, index = torch.ones_like(actions, dtype=torch.bool), torch.zeros_like(actions)
    estimate = kl_from_reference_samples(Samples(actions, ones, p[actions], p[actions], index),
                                         Samples(actions, ones, r[actions], r[actions], index))
    assert (estimate >= 0).all()
    torch.testing.assert_close(estimate.mean(), (p.exp() * (p - r)).sum(), atol=1e-2, rtol=0)
