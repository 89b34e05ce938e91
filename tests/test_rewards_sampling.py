"""Sampling-family reward strategies (reinforce, scst, mrt, reward_model, rlhf, dpo) and the policy
they sample from: a two-armed bandit each must learn, exact CE during warm-up, edge cases, and short
runs of the tiny real models on every kind. CPU only."""
from __future__ import annotations

import copy
import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import pytest
import scipy.stats
import torch

import datasets

from harness.run.data import Batches
from harness.run.models import load_model, load_tokenizer
from rewards._sampling import spearman
from rewards.base import IGNORE, LossOutput, RewardStrategy, StepContext, build_reward
import kinds
from kinds.sequences import InverseCDFDraw
from tasks.base import get_task
from tests.helpers import check_chunked_scoring, check_declared_params

STRATEGIES = ("reinforce", "scst", "mrt", "reward_model", "rlhf", "dpo", "online_dpo", "grpo", "rloo")
# The strategy's own objective term: loss = term + α·CE once warm-up is over.
OWN_TERM = {"reinforce": "pg", "scst": "pg", "mrt": "risk", "reward_model": "pg", "rlhf": "pg", "dpo": "dpo",
            "grpo": "pg", "rloo": "pg", "online_dpo": "dpo"}
COMMON_TERMS = {"ce", "reward", "baseline", "kl", "entropy", "sample_length"}
NOT_LOGGED = {"dpo": {"reward"}}  # offline: no policy samples, so no reward of them
EXTRA_TERMS = {"reward_model": {"rm_rank_corr", "rm_mse", "rm_reward"},
               "rlhf": {"rm_reward", "rm_heldout_accuracy", "rm_heldout_true_accuracy", "rm_train_loss", "kl_coef",
                        "kl_penalty", "clip_fraction", "ratio_deviation", "preference_pairs", "preference_heldout",
                        "preference_ties", "annotator_agreement"},
               "mrt": set(), "reinforce": set(), "scst": set(),
               "dpo": {"margin", "accuracy", "pairs", "chosen_metric", "rejected_metric", "preference_pairs",
                       "preference_heldout", "preference_ties", "annotator_agreement"},
               "online_dpo": {"margin", "pairs"},
               "grpo": {"clip_fraction", "ratio_deviation", "reward_std"}, "rloo": {"penalised_reward"}}
# Settings under which the bandit is learnt in BANDIT_STEPS steps (α = 0: the sampled objective alone).
BANDIT_PARAMS: dict[str, dict[str, Any]] = {
    "reinforce": {}, "scst": {}, "mrt": {}, "reward_model": {"rm_lr": 0.01},
    "rlhf": {"rm_lr": 0.01, "rm_epochs": 50, "temperature": 0.0, "flip_rate": 0.0}, "dpo": {"temperature": 0.0, "flip_rate": 0.0},
    "online_dpo": {"temperature": 0.0, "flip_rate": 0.0}, "grpo": {}, "rloo": {},
}
BANDIT_STEPS = 60
FEW_UPDATES = {"rlhf": {"updates": 2}}  # enough to see a rollout's second update, at half the cost


# ---- a two-armed bandit as a classification model -------------------------------------------

class Bandit(torch.nn.Module):
    """Logits over `arms` classes from a linear layer on the embedding of one fixed input."""

    def __init__(self, arms: int = 2, bias: tuple[float, ...] = (1.0, -1.0)):
        super().__init__()
        self.embed = torch.nn.Embedding(1, 4)
        self.head = torch.nn.Linear(4, arms)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.copy_(torch.tensor(bias[:arms]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> SimpleNamespace:
        hidden = self.embed(input_ids)
        return SimpleNamespace(logits=self.head(hidden.mean(1)), hidden_states=(hidden,))


def bandit_task(arms: int = 2) -> SimpleNamespace:
    return SimpleNamespace(name="bandit", kind="classification", labels=tuple(f"arm{i}" for i in range(arms)),
                           sentence_score=lambda pred, gold: 1.0 if pred == gold else 0.0)


BANDIT_ROWS = 64  # training rows of the bandit (batches of 8 take turns over them)


def bandit_batch(rows: int = 8, gold: int = 1, offset: int = 0) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.zeros(rows, 3, dtype=torch.long), "attention_mask": torch.ones(rows, 3, dtype=torch.long),
            "labels": torch.full((rows,), gold), "index": torch.arange(offset, offset + rows)}


def training_rows(task: Any, features: list[dict[str, Any]], batch_size: int = 8, pad_id: int = 0,
                  start: int | None = None) -> Batches:
    """The run's training batches (`StepContext.train`) over encoded rows."""
    kind = kinds.get_kind(task.kind)
    columns = ["input_ids", "labels", "index", *kind.columns]
    table = datasets.Dataset.from_list([{k: f[k] for k in columns} for f in features])
    return Batches(kind, task, table, batch_size, pad_id, start)


def bandit_rows(gold: int = 1) -> list[dict[str, Any]]:
    return [{"input_ids": [0, 0, 0], "labels": gold, "index": i} for i in range(BANDIT_ROWS)]


def make_ctx(task: Any, model: torch.nn.Module, tokenizer: Any = None, step: int = 0, total_steps: int = 100,
             max_new_tokens: int = 4, train: Batches | None = None) -> StepContext:
    kind = kinds.get_kind(task.kind)
    if train is None:  # the bandit's
        train = training_rows(task, bandit_rows(len(task.labels) - 1))
    return StepContext(task=task, model=model, tokenizer=tokenizer, step=step, total_steps=total_steps,
                       forward=kinds.forward, policy=kind.policy(task, tokenizer, max_new_tokens),
                       reference=copy.deepcopy(model).eval().requires_grad_(False), kind=kind, train=train, seed=0)


def started(name: str, ctx: StepContext, params: dict[str, Any] | None = None) -> RewardStrategy:
    """The strategy built and started as the recipe does (run-level data such as preference sets)."""
    strategy = build_reward(name, params)
    strategy.start(ctx)
    return strategy


def train_batch(strategy: RewardStrategy, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext,
                optimizer: torch.optim.Optimizer, step: int,
                check: Any = None) -> list[LossOutput]:
    """One batch as the recipe trains it: a rollout without gradient, then `updates` optimiser steps
    (each calling `loss` with the rollout), `after_step` after each; `check(out, model)` after backward."""
    with torch.no_grad():
        rollout = strategy.rollout(batch, dataclasses.replace(ctx, step=step))
    outs = []
    for update in range(strategy.updates):
        out = strategy.loss(kinds.forward(model, batch), batch,
                            dataclasses.replace(ctx, step=step + update, update=update, rollout=rollout))
        optimizer.zero_grad()
        if check is not None:
            check(out, model)
        elif out.loss.requires_grad:
            out.loss.backward()
        optimizer.step()
        strategy.after_step(dataclasses.replace(ctx, step=step + update + 1, update=update))
        outs.append(out)
    return outs


def p_arm1(model: Bandit) -> float:
    with torch.no_grad():
        return kinds.forward(model, bandit_batch(1))[0].softmax(-1)[1].item()


@pytest.mark.parametrize("name", STRATEGIES)
def test_bandit_learns_the_better_arm(name: str) -> None:
    torch.manual_seed(0)
    model, batch = Bandit(), bandit_batch()
    strategy = build_reward(name, {"alpha": 0.0, **BANDIT_PARAMS[name]})
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    ctx = make_ctx(bandit_task(), model)
    before = p_arm1(model)
    strategy.start(ctx)
    for step in range(BANDIT_STEPS):
        batch = bandit_batch(offset=8 * (step % (BANDIT_ROWS // 8)))
        train_batch(strategy, model, batch, ctx, optimizer, step * strategy.updates)
    assert before < 0.15
    assert p_arm1(model) > 0.8, f"{name}: p(arm 1) {before:.2f} -> {p_arm1(model):.2f}"


# ---- (2) warm-up is exactly CE; afterwards loss = objective + α·CE --------------------------

@pytest.mark.parametrize("name", STRATEGIES)
def test_warmup_is_exactly_ce(name: str) -> None:
    torch.manual_seed(1)
    model, batch = Bandit(bias=(0.3, -0.2)), bandit_batch()
    ctx = make_ctx(bandit_task(), model, step=4, total_steps=10)
    logits = kinds.forward(model, batch)
    out = started(name, ctx, {"warmup": 0.5, "alpha": 0.3}).loss(logits, batch, ctx)
    ce = build_reward("ce").loss(logits, batch, ctx)
    assert torch.equal(out.loss, ce.loss)
    grads = torch.autograd.grad(out.loss, list(model.parameters()), retain_graph=True)
    ce_grads = torch.autograd.grad(ce.loss, list(model.parameters()))
    assert all(torch.equal(g, c) for g, c in zip(grads, ce_grads))
    assert (COMMON_TERMS - NOT_LOGGED.get(name, set())) | {OWN_TERM[name]} <= set(out.terms)  # logged in warm-up too


@pytest.mark.parametrize("name", STRATEGIES)
def test_after_warmup_loss_is_objective_plus_alpha_ce(name: str) -> None:
    torch.manual_seed(2)
    model, batch = Bandit(bias=(0.3, -0.2)), bandit_batch()
    ctx = make_ctx(bandit_task(), model, step=5, total_steps=10)
    out = started(name, ctx, {"warmup": 0.5, "alpha": 0.3}).loss(kinds.forward(model, batch), batch, ctx)
    torch.testing.assert_close(out.loss.detach(), out.terms[OWN_TERM[name]] + 0.3 * out.terms["ce"])


# ---- (3) edge cases ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return load_tokenizer("tiny-bert")


def assert_finite(out: LossOutput, model: torch.nn.Module) -> None:
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert all(torch.isfinite(v) and not v.requires_grad and v.dim() == 0 for v in out.terms.values()), out.terms
    model.zero_grad()
    if out.loss.requires_grad:
        out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def run_steps(name: str, model: torch.nn.Module, batch: dict[str, Any], ctx: StepContext, steps: int = 2,
              params: dict[str, Any] | None = None) -> list[LossOutput]:
    """`steps` batches as the recipe trains them (each: a rollout, then `updates` optimiser steps);
    every loss and gradient must be finite. Returns the output of every optimiser step."""
    strategy = build_reward(name, params)
    model.train(strategy.policy_dropout)  # as the recipe trains it
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    strategy.start(ctx)
    outs = []
    for step in range(steps):
        outs += train_batch(strategy, model, batch, ctx, optimizer, step * strategy.updates, check=assert_finite)
    return outs


@pytest.mark.parametrize("case", ["single_class", "p_gold_one"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_classification_edge_cases_are_finite(name: str, case: str) -> None:
    torch.manual_seed(3)
    arms, bias = (1, (0.0,)) if case == "single_class" else (2, (0.0, 1e4))
    model = Bandit(arms, bias)
    batch = bandit_batch(gold=arms - 1)
    run_steps(name, model, batch, make_ctx(bandit_task(arms), model))


ROWS: dict[str, dict[str, list[Any]]] = {
    "ner": {"tokens": [["John", "lives", "in", "Berlin", "."], ["Hello", "Paris"], ["ok"]],
            "tags": [["B-PER", "O", "O", "B-LOC", "O"], ["O", "B-LOC"], ["O"]]},
    "sentiment": {"text": ["a fine film", "dull and long", "great"], "label": [1, 0, 1]},
    "translation": {"source": ["the house is small", "hello world", "yes"],
                    "target": ["das haus ist klein", "hallo welt", "ja"]},
}


def real_setup(task_name: str, tokenizer: Any, max_new_tokens: int = 5,
               all_masked: bool = False) -> tuple[torch.nn.Module, dict, StepContext]:
    """A tiny random model of the task's kind, a batch of hand-made rows (as its training rows too) and the
    runner's context; `all_masked`: no position of any row is scored."""
    torch.manual_seed(4)
    task = get_task(task_name)
    model = load_model("tiny-bert2bert" if task.kind == "seq2seq" else "tiny-bert", task, tokenizer)
    kind = kinds.get_kind(task.kind)
    start = kind.start_token(model)
    rows = ROWS[task_name]
    encoded = kind.encode(task, rows, tokenizer, start)
    if all_masked:
        encoded["labels"] = [[IGNORE] * len(labels) for labels in encoded["labels"]]
    features = [{**{k: v[i] for k, v in rows.items()}, **{k: v[i] for k, v in encoded.items()}, "index": i}
                for i in range(len(next(iter(rows.values()))))]
    batch = kind.collate(task, features, tokenizer.pad_token_id, start)
    model.train()
    return model, batch, make_ctx(task, model, tokenizer, total_steps=2, max_new_tokens=max_new_tokens,
                                  train=training_rows(task, features, pad_id=tokenizer.pad_token_id, start=start))


@pytest.mark.parametrize("name", STRATEGIES)
def test_all_tags_masked_is_finite(name: str, tokenizer: Any) -> None:
    model, batch, ctx = real_setup("ner", tokenizer, all_masked=True)
    assert (batch["labels"] == IGNORE).all()
    outs = run_steps(name, model, batch, ctx)
    assert outs[-1].terms["sample_length"] == 0


@pytest.mark.parametrize("name", STRATEGIES)
def test_empty_generated_output_is_finite(name: str, tokenizer: Any) -> None:
    """Every sample is the end-of-sequence token alone: an empty output text of one action."""
    model, batch, ctx = real_setup("translation", tokenizer, max_new_tokens=3)
    with torch.no_grad():
        model.get_output_embeddings().bias[model.generation_config.eos_token_id] = 40.0
    ctx = dataclasses.replace(ctx, reference=copy.deepcopy(model).eval().requires_grad_(False))
    samples = ctx.policy.sample(model, batch, None, num_samples=2)
    assert samples.lengths.tolist() == [1] * 6
    assert ctx.policy.score(samples, batch).tolist() == [0.0] * 6
    run_steps(name, model, batch, ctx, steps=1, params=FEW_UPDATES.get(name))


def test_samples_stop_at_the_length_factor_times_the_longest_reference(tokenizer: Any) -> None:
    """A tiny random model never ends a sentence: every sample runs to the cap."""
    model, batch, ctx = real_setup("translation", tokenizer, max_new_tokens=40)
    longest = int((batch["labels"] != IGNORE).sum(-1).max())  # "das haus ist klein" + end of sequence
    capped = ctx.kind.policy(ctx.task, tokenizer, 40, length_factor=1.5)
    assert capped.sample_length(batch) == math.ceil(1.5 * longest) < 40
    assert ctx.kind.policy(ctx.task, tokenizer, 4, length_factor=1.5).sample_length(batch) == 4  # max_new_tokens wins
    assert ctx.kind.policy(ctx.task, tokenizer, 40).sample_length(batch) == 40  # no factor: max_new_tokens only
    with torch.no_grad():
        model.get_output_embeddings().bias[model.generation_config.eos_token_id] = -40.0  # never ends
    samples = capped.sample(model, batch, None, num_samples=2)
    assert samples.actions.shape[-1] == capped.sample_length(batch)
    assert samples.lengths.tolist() == [capped.sample_length(batch)] * 6


def test_inverse_cdf_draws_follow_the_softmax() -> None:
    """The draw under greedy decoding is an exact sample of softmax(scores): frequencies over 40,000
    draws within 4 standard errors of the probabilities, and the returned scores pick exactly it."""
    scores = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).repeat(40_000, 1)
    torch.manual_seed(0)
    out = InverseCDFDraw()(torch.zeros(40_000, 1, dtype=torch.long), scores)
    assert (out == 0).sum(-1).tolist() == [1] * 40_000 and bool(torch.isinf(out).sum(-1).eq(3).all())
    frequency = torch.bincount(out.argmax(-1), minlength=4).float() / 40_000
    p = torch.softmax(scores[0], -1)
    assert bool(((frequency - p).abs() <= 4 * (p * (1 - p) / 40_000).sqrt()).all()), (frequency, p)


def test_k_samples_per_input_come_from_that_input(tokenizer: Any) -> None:
    """`repeat` gives each input K adjacent copies of its encoded source (the encoder run once), and
    the K samples drawn from them differ."""
    model, batch, ctx = real_setup("translation", tokenizer)
    torch.manual_seed(0)
    many = ctx.policy.sample(model, batch, None, num_samples=3)
    assert many.index.tolist() == [i for i in range(len(batch["index"])) for _ in range(3)]
    assert len({tuple(a.tolist()) for a in many.actions}) > 1, "draws differ"
    model.eval()  # as `sample` runs it: no dropout
    repeated = ctx.kind.repeat(model, batch, 3)
    assert repeated["attention_mask"].shape[0] == 3 * batch["attention_mask"].shape[0]
    encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    torch.testing.assert_close(repeated["encoder_outputs"].last_hidden_state[3:6],
                               encoded.last_hidden_state[1:2].expand(3, -1, -1))


def test_chunked_teacher_forcing_is_the_one_pass_scoring(tokenizer: Any) -> None:
    model, batch, ctx = real_setup("translation", tokenizer, max_new_tokens=8)
    check_chunked_scoring(ctx.policy, model, batch, num_samples=3)


# ---- (4) short runs of the tiny real models, every kind ------------------------------------

@pytest.mark.parametrize("task_name", ["ner", "sentiment", "translation"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_tiny_run_logs_every_diagnostic(name: str, task_name: str, tokenizer: Any) -> None:
    model, batch, ctx = real_setup(task_name, tokenizer)
    outs = run_steps(name, model, batch, ctx, steps=2, params=FEW_UPDATES.get(name))
    expected = (COMMON_TERMS - NOT_LOGGED.get(name, set())) | {OWN_TERM[name]} | EXTRA_TERMS[name]
    assert all(expected <= set(out.terms) for out in outs), expected - set(outs[-1].terms)
    if build_reward(name).updates > 1:  # later updates re-score the rollout's samples under the moved policy
        assert outs[0].terms["ratio_deviation"] == 0 < outs[1].terms["ratio_deviation"]


@pytest.mark.parametrize("task_name", ["ner", "translation"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_kl_is_zero_at_the_start(name: str, task_name: str, tokenizer: Any) -> None:
    """In the mode the recipe trains it (dropout off for sampling strategies) the policy is its
    reference on the first step."""
    model, batch, ctx = real_setup(task_name, tokenizer)
    strategy = started(name, ctx)
    model.train(strategy.policy_dropout)
    out = strategy.loss(kinds.forward(model, batch), batch, ctx)
    assert out.terms["kl"] >= 0
    torch.testing.assert_close(out.terms["kl"], torch.tensor(0.0), atol=1e-5, rtol=0)


# ---- the policy and the shared pieces ------------------------------------------------------

@pytest.mark.parametrize("task_name", ["ner", "sentiment", "translation"])
def test_features_rescore_like_log_prob(task_name: str, tokenizer: Any) -> None:
    model, batch, ctx = real_setup(task_name, tokenizer)
    model.eval()  # no dropout: the two scorings must agree
    samples = ctx.policy.sample(model, batch, None, num_samples=3)
    assert samples.index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    with torch.no_grad():
        rescored, features = ctx.policy.features(model, batch, samples)
        torch.testing.assert_close(rescored.logprob, ctx.policy.log_prob(model, batch, samples).logprob)
    torch.testing.assert_close(rescored.logprob, samples.logprob.detach())
    hidden = model.config.encoder.hidden_size if task_name == "translation" else model.config.hidden_size
    classes = 1 if task_name == "translation" else len(ctx.task.labels)
    assert features.shape == (9, hidden + classes * hidden + 3) and torch.isfinite(features).all()


def test_reward_head_trains_apart_from_the_model(tokenizer: Any) -> None:
    model, batch, ctx = real_setup("sentiment", tokenizer)
    strategy = build_reward("reward_model")
    strategy.loss(kinds.forward(model, batch), batch, ctx)
    head = strategy.head
    before = [p.detach().clone() for p in head.parameters()]
    strategy.after_step(ctx)  # the head's own Adam step
    assert all(p.grad is None for p in model.parameters())
    strategy.loss(kinds.forward(model, batch), batch, ctx)
    assert strategy.head is head and all(not torch.equal(a, b) for a, b in zip(before, head.parameters()))


def test_spearman_matches_scipy_with_ties() -> None:
    x = torch.tensor([0.1, 0.4, 0.4, 0.9, 0.2, 0.7])
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    expected = scipy.stats.spearmanr(x.numpy(), y.numpy()).statistic
    torch.testing.assert_close(spearman(x, y), torch.tensor(expected, dtype=torch.float32))
    assert spearman(x, torch.ones(6)) == 0


def test_mrt_finds_repeated_samples() -> None:
    """Q is renormalised over distinct samples: later copies of a sample are left out."""
    from rewards.mrt import _repeated
    samples = SimpleNamespace(actions=torch.tensor([0, 0, 1, 1, 1, 1]), mask=torch.ones(6, dtype=torch.bool))
    assert _repeated(samples, 3).tolist() == [[False, True, False], [False, True, True]]


@pytest.mark.parametrize("name", STRATEGIES)
def test_parameters_are_declared_and_validated(name: str) -> None:
    strategy = check_declared_params(name)
    assert isinstance(strategy, RewardStrategy) and strategy.family == "sampling"
    assert strategy.init_from == "ce" and strategy.needs_reference
    assert {"alpha", "warmup"} <= set(strategy.params())
    with pytest.raises(ValueError, match="warmup"):
        build_reward(name, {"warmup": 1.5})


# ---- reinforce: a sentence reward for generated text, an immediate ±1 for labels and tags ---------

class StubPolicy:
    """Returns fixed samples; `score` (the sentence metric) and `token_correct` record being called."""

    def __init__(self, samples: Any, scores: torch.Tensor, correct: torch.Tensor):
        self.samples, self.scores, self.correct, self.calls = samples, scores, correct, []

    def sample(self, model, batch, logits, num_samples=1, greedy=False):
        return self.samples

    def score(self, samples, batch):
        self.calls.append("score")
        return self.scores

    def token_correct(self, samples, batch):
        self.calls.append("token_correct")
        return self.correct


@pytest.mark.parametrize("generating", [True, False])
def test_reinforce_rewards_sequences_by_sentence_and_labels_by_action(generating: bool) -> None:
    from rewards.base import Samples
    token_logprob = torch.tensor([[-0.5, -1.0, -2.0], [-0.1, -0.3, 0.0], [-1.5, -0.2, -0.7]], requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False], [True, True, True]])
    masked = torch.where(mask, token_logprob, 0.0)
    samples = Samples(actions=torch.zeros(3, 3, dtype=torch.long), mask=mask, logprob=masked.sum(-1),
                      token_logprob=masked, index=torch.arange(3))
    scores = torch.tensor([0.2, 0.9, 0.4])
    correct = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    policy = StubPolicy(samples, scores, correct)
    ctx = StepContext(task=None, model=None, tokenizer=None, step=0, total_steps=1, forward=kinds.forward,
                      policy=policy, kind=SimpleNamespace(generates=generating))
    batch = {"labels": torch.zeros(3, 3, dtype=torch.long)}
    strategy = build_reward("reinforce", {"alpha": 0.0})
    terms = strategy.objective(None, batch, ctx).terms
    if generating:  # r_n = the sentence metric, credited to the summed log-probability of the whole output
        assert policy.calls == ["score"]
        expected = -((scores - scores.mean()) * masked.sum(-1)).mean()
    else:  # r_a = ±1 per action, credited to that action only
        assert policy.calls == ["token_correct"]
        reward = 2 * correct - 1
        baseline = reward[mask].mean()
        expected = -(torch.where(mask, (reward - baseline) * masked, 0.0).sum(-1)).mean()
    torch.testing.assert_close(terms["pg"], expected.detach())
    second = strategy.objective(None, batch, ctx).terms  # the baseline is the first batch's mean reward
    torch.testing.assert_close(second["baseline"], terms["reward"])


# ---- no length normalisation: every token of a sample gets its sample's weight, whatever its length ----

def two_lengths() -> tuple[Any, torch.Tensor]:
    """Four samples of two inputs (K = 2): lengths 1, 3, 2, 3; per-token log-probs as a leaf tensor."""
    from rewards.base import Samples
    leaf = torch.tensor([[-0.5, -1.0, -2.0], [-0.1, -0.3, -0.2], [-1.5, -0.2, -0.7], [-0.4, -0.9, -0.3]],
                        requires_grad=True)
    mask = torch.tensor([[True, False, False], [True, True, True], [True, True, False], [True, True, True]])
    masked = torch.where(mask, leaf, 0.0)
    samples = Samples(actions=torch.arange(12).view(4, 3), mask=mask, logprob=masked.sum(-1), token_logprob=masked,
                      index=torch.tensor([0, 0, 1, 1]))
    return samples, leaf


class GreedyStub(StubPolicy):
    def __init__(self, samples: Any, scores: torch.Tensor, greedy_scores: torch.Tensor):
        super().__init__(samples, scores, torch.zeros(()))
        self.greedy, self.greedy_scores = SimpleNamespace(), greedy_scores

    def sample(self, model, batch, logits, num_samples=1, greedy=False):
        return self.greedy if greedy else self.samples

    def score(self, samples, batch):
        return self.greedy_scores if samples is self.greedy else self.scores


def stub_ctx(policy: Any) -> StepContext:
    return StepContext(task=None, model=None, tokenizer=None, step=0, total_steps=1, forward=kinds.forward,
                       policy=policy, kind=SimpleNamespace(generates=True))


def test_scst_weights_every_token_by_its_samples_advantage() -> None:
    samples, leaf = two_lengths()
    scores = torch.tensor([0.9, 0.9, 0.1, 0.5])
    ctx = stub_ctx(GreedyStub(samples, scores, torch.tensor([0.4, 0.3])))
    value = build_reward("scst", {"alpha": 0.0}).objective(None, {}, ctx).value
    (grad,) = torch.autograd.grad(value, leaf)
    advantage = scores - torch.tensor([0.4, 0.4, 0.3, 0.3])
    expected = torch.where(samples.mask, -advantage[:, None] / 4, 0.0)  # not −A/(N·|y|)
    torch.testing.assert_close(grad, expected)


def test_policy_gradient_uses_the_summed_log_probability() -> None:
    from rewards._sampling import policy_gradient
    samples, leaf = two_lengths()
    advantage = torch.tensor([1.0, 1.0, -0.5, 2.0])
    (grad,) = torch.autograd.grad(policy_gradient(advantage, samples), leaf)
    torch.testing.assert_close(grad, torch.where(samples.mask, -advantage[:, None] / 4, 0.0))


def test_mrt_sharpens_the_summed_log_probability() -> None:
    samples, leaf = two_lengths()
    scores = torch.tensor([0.9, 0.2, 0.1, 0.5])
    out = build_reward("mrt", {"alpha": 0.0, "num_samples": 2, "beta": 0.5}).objective(None, {}, stub_ctx(
        StubPolicy(samples, scores, torch.zeros(()))))
    q = torch.softmax(0.5 * samples.logprob.detach().view(2, 2), -1)
    torch.testing.assert_close(out.value.detach(), (q * (1 - scores.view(2, 2))).sum(-1).mean())
    assert build_reward("mrt").beta == 5e-3  # Shen et al. 2016's sharpness for summed log-probabilities


# ---- grpo and rloo --------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [True, False])
def test_grpo_advantages_sum_to_zero_per_group(scale: bool) -> None:
    from rewards._sampling import group_advantages
    reward = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.3, 0.3, 0.3, 0.3, 0.0, 1.0, 0.2, 0.7])
    advantage = group_advantages(reward, 4, scale=scale).view(3, 4)
    torch.testing.assert_close(advantage.sum(-1), torch.zeros(3), atol=1e-6, rtol=0)
    assert (advantage[1] == 0).all(), "a group of equal rewards teaches nothing"
    group = reward.view(3, 4)
    expected = group - group.mean(-1, keepdim=True)
    if scale:  # Shao et al.: divided by the group's std; Dr. GRPO: not
        expected = expected / (group.std(-1, keepdim=True) + 1e-4)
    torch.testing.assert_close(advantage, expected)


def test_rloo_baseline_excludes_the_sample_itself() -> None:
    from rewards._sampling import leave_one_out_baseline
    reward = torch.tensor([0.1, 0.5, 0.2, 0.9, 1.0, 0.0])
    baseline = leave_one_out_baseline(reward, 3)
    torch.testing.assert_close(baseline, torch.tensor([0.35, 0.15, 0.3, 0.5, 0.45, 0.95]))
    changed = reward.clone()
    changed[1] = 10.0  # another reward for sample 1: its own baseline stays, its group's others move
    moved = leave_one_out_baseline(changed, 3)
    torch.testing.assert_close(moved[1], baseline[1])
    assert (moved[[0, 2]] - baseline[[0, 2]] > 4).all()
    assert torch.equal(moved[3:], baseline[3:])


@pytest.mark.parametrize("task_name", ["ner", "translation"])
def test_grpo_ratio_is_one_on_the_first_update_of_a_rollout(task_name: str, tokenizer: Any) -> None:
    model, batch, ctx = real_setup(task_name, tokenizer)
    strategy = build_reward("grpo", {"updates": 3})
    model.train(strategy.policy_dropout)
    outs = train_batch(strategy, model, batch, ctx, torch.optim.AdamW(model.parameters(), lr=1e-2), 0)
    assert len(outs) == 3
    assert outs[0].terms["ratio_deviation"] == 0 and outs[0].terms["clip_fraction"] == 0
    assert outs[1].terms["ratio_deviation"] > 0, "later updates re-score the same samples under the moved policy"
    assert outs[0].terms["reward"] == outs[2].terms["reward"], "one rollout per batch"
