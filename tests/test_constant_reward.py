"""The constant-reward control: its objective is −c·(1/N) Σ_n log π(y_n) over K samples per input,
log π summed over each sample's actions, as the strategies it controls; and (α = 0) it learns nothing
from the gold answers — the loss and gradient do not change when the labels do."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from rewards.base import StepContext, build_reward
import kinds

TASK = SimpleNamespace(name="toy", kind="classification", labels=("a", "b", "c"),
                       sentence_score=lambda pred, gold: float(pred == gold))


def step(labels: torch.Tensor, params: dict, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Loss and gradient w.r.t. the logits of one step on fixed logits, sampling with a fixed seed."""
    torch.manual_seed(seed)
    logits = torch.tensor([[0.2, 1.0, -0.5], [1.5, 0.0, 0.3], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.5]], requires_grad=True)
    batch = {"input_ids": torch.zeros(4, 2, dtype=torch.long), "labels": labels, "index": torch.arange(4)}
    ctx = StepContext(task=TASK, model=None, tokenizer=None, step=10, total_steps=10, forward=kinds.forward,
                      policy=kinds.get_kind("classification").policy(TASK, None, 4),
                      kind=kinds.get_kind("classification"))
    out = build_reward("constant_reward", params).loss(logits, batch, ctx)
    (grad,) = torch.autograd.grad(out.loss, logits)
    return out.loss.detach(), grad, out.terms


def test_objective_is_constant_times_mean_sampled_log_probability() -> None:
    labels = torch.tensor([1, 0, 2, 1])
    loss, _, terms = step(labels, {"value": 2.0, "alpha": 0.3, "num_samples": 3})
    torch.testing.assert_close(loss, terms["pg"] + 0.3 * terms["ce"])
    assert terms["reward"] == 2.0 and {"entropy", "sample_length"} <= set(terms)  # no reference model: no kl
    torch.manual_seed(0)  # the same draw as inside `step`
    logits = torch.tensor([[0.2, 1.0, -0.5], [1.5, 0.0, 0.3], [0.0, 0.0, 0.0], [-1.0, 2.0, 0.5]])
    actions = torch.distributions.Categorical(logits=logits.repeat_interleave(3, 0)).sample()
    expected = -2.0 * logits.repeat_interleave(3, 0).log_softmax(-1).gather(1, actions[:, None]).mean()
    torch.testing.assert_close(terms["pg"], expected)


def test_the_reward_carries_no_information_about_the_gold_answer() -> None:
    params = {"alpha": 0.0, "num_samples": 2}
    loss_a, grad_a, _ = step(torch.tensor([1, 0, 2, 1]), params)
    loss_b, grad_b, _ = step(torch.tensor([0, 2, 1, 0]), params)
    torch.testing.assert_close(loss_a, loss_b)
    torch.testing.assert_close(grad_a, grad_b)


def test_the_control_matches_the_sampling_of_the_strategies_it_controls() -> None:
    """Same K by default (rlhf apart: PPO for RLHF draws one response per prompt, and its docstring
    and this control's say to run the control with num_samples=1 against it), same normalisation
    (summed log-probabilities: every token weighs c/N, whatever its sample's length), same sampling
    (the policy's own `sample`, on-policy)."""
    import dataclasses

    from rewards.base import REWARDS
    from tests.test_rewards_sampling import StubPolicy, stub_ctx, two_lengths

    control = build_reward("constant_reward")
    assert control.num_samples == 4
    for name, cls in REWARDS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if cls.family == "sampling" and "num_samples" in fields:
            assert fields["num_samples"].default == (1 if name == "rlhf" else control.num_samples), name
    samples, leaf = two_lengths()
    out = build_reward("constant_reward", {"alpha": 0.0, "value": 2.0}).objective(
        None, {}, stub_ctx(StubPolicy(samples, torch.zeros(4), torch.zeros(())))
    )
    (grad,) = torch.autograd.grad(out.value, leaf)
    torch.testing.assert_close(grad, torch.where(samples.mask, torch.tensor(-2.0 / 4), 0.0))
