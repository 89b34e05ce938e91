"""RAML (Norouzi et al. 2016): targets sampled from the exponentiated payoff distribution
q(y | y*) ∝ exp(−d(y, y*)/τ), the sampler's distribution against q, τ = 0 as CE, labels and tags scored
with the batch's logits, generated sequences on their own noisy prefix, and runs through the recipe."""
from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from harness.run import recipe
from harness.run.recipe import run
from harness.store import Store
from kinds import get_kind
from rewards.base import IGNORE, REWARDS, build_reward
from rewards.raml import sample_payoff
from tests.helpers import check_declared_params, configs, write_grid

LABELS = {
    "classification": torch.tensor([1, 0, IGNORE, 3, 4]),
    "tagging": torch.tensor([[0, 1, 2, 0, IGNORE], [3, 4, 0, IGNORE, IGNORE]]),
    "seq2seq": torch.tensor([[2, 5, 5, 1, IGNORE], [6, 3, 1, IGNORE, IGNORE]]),
}
CLASSES = {"classification": 5, "tagging": 5, "seq2seq": 7}


def ctx_for(kind: str) -> SimpleNamespace:
    task = SimpleNamespace(name="toy", kind=kind, labels=())
    return SimpleNamespace(task=task, model=None, tokenizer=None, step=0, total_steps=1, policy=None,
                           reference=None, kind=get_kind(kind))


def logits_for(kind: str, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*LABELS[kind].shape, CLASSES[kind], generator=generator)


def q_of_distance(n: int, classes: int, tau: float) -> list[float]:
    weights = [math.comb(n, e) * (classes - 1) ** e * math.exp(-e / tau) for e in range(n + 1)]
    return [w / sum(weights) for w in weights]


@pytest.mark.parametrize("kind", list(LABELS))
def test_tau_zero_is_ce_exactly(kind: str) -> None:
    logits, labels = logits_for(kind, 1) * 3, LABELS[kind]
    batch = {"labels": labels}
    ce = build_reward("ce").loss(logits, batch, ctx_for(kind)).loss
    for params in ({"tau": 0.0, "token_tau": 0.0}, {"tau": 1e-3, "token_tau": 1e-3, "num_samples": 4}):
        out = build_reward("raml", params).loss(logits, batch, ctx_for(kind))
        assert torch.equal(out.loss, ce) and float(out.terms["replaced"]) == 0.0


def test_sampled_targets_follow_q_on_a_small_case() -> None:
    """Three tags over C = 3 classes: every one of the 27 sequences is drawn with probability
    exp(−d_H/τ)/Z, so the distances follow C(n, e)(C − 1)^e exp(−e/τ)/Z; a shorter row (n = 2) its own q,
    and its unscored position is never touched."""
    gold = torch.tensor([[0, 1, 2], [2, 0, IGNORE]])
    tau, draws = 0.7, 60_000
    targets, distance = sample_payoff(gold, gold != IGNORE, 3, tau, draws, torch.Generator().manual_seed(0))
    assert targets.shape == (2 * draws, 3)
    full, short = targets[:draws], targets[draws:]
    assert (short[:, 2] == IGNORE).all() and ((short[:, :2] >= 0) & (short[:, :2] < 3)).all()
    for rows, row_gold, n in ((full, gold[0], 3), (short[:, :2], gold[1, :2], 2)):
        measured = (rows != row_gold).sum(-1)
        assert torch.equal(measured, distance[:draws] if n == 3 else distance[draws:]), "distance is Hamming"
        for e, q in enumerate(q_of_distance(n, 3, tau)):
            share = float((measured == e).float().mean())
            assert abs(share - q) < 4 * math.sqrt(q * (1 - q) / draws) + 1e-3, (n, e, share, q)
    z = sum(math.exp(-sum(a != b for a, b in zip(y, (0, 1, 2))) / tau) for y in itertools.product(range(3), repeat=3))
    counts = {}
    for row in full.tolist():
        counts[tuple(row)] = counts.get(tuple(row), 0) + 1
    assert len(counts) == 27
    for y, count in counts.items():
        q = math.exp(-sum(a != b for a, b in zip(y, (0, 1, 2))) / tau) / z
        assert abs(count / draws - q) < 4 * math.sqrt(q * (1 - q) / draws) + 1e-3, (y, count / draws, q)


def test_token_sequences_are_replaced_at_the_rate_q_implies() -> None:
    """Over a vocabulary of V entries each position is replaced with probability
    (V − 1)e^{−1/τ} / (1 + (V − 1)e^{−1/τ}) (q factorises over positions), whatever the length."""
    vocabulary, tau = 30522, 0.08
    gold = torch.randint(0, vocabulary, (4, 40), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(gold, dtype=torch.bool)
    mask[2:, 25:] = False
    targets, distance = sample_payoff(gold, mask, vocabulary, tau, 500, torch.Generator().manual_seed(2))
    odds = (vocabulary - 1) * math.exp(-1 / tau)
    rate = float(distance.sum() / mask.repeat_interleave(500, 0).sum())
    assert abs(rate - odds / (1 + odds)) < 0.005
    assert ((targets >= 0) & (targets < vocabulary)).all()


@pytest.mark.parametrize("kind", ["classification", "tagging"])
def test_labels_and_tags_are_scored_with_the_batchs_logits(kind: str) -> None:
    """The loss is −log p of the sampled targets under the same logits, averaged over K × scored positions."""
    logits, labels = logits_for(kind, 2).requires_grad_(True), LABELS[kind]
    params = {"tau": 0.8, "num_samples": 3}
    torch.manual_seed(5)
    out = build_reward("raml", params).loss(logits, {"labels": labels}, ctx_for(kind))
    torch.manual_seed(5)
    rows = labels.reshape(labels.shape[0], -1)
    targets, distance = sample_payoff(rows, rows != IGNORE, CLASSES[kind], 0.8, 3)
    assert distance.sum() > 0
    log_probs = logits.detach().reshape(rows.shape[0], -1, CLASSES[kind]).log_softmax(-1).repeat_interleave(3, 0)
    keep = targets != IGNORE
    expected = -log_probs[keep].gather(-1, targets[keep].unsqueeze(-1)).mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert torch.count_nonzero(logits.grad[labels == IGNORE]) == 0


def test_generated_sequences_are_scored_on_their_own_noisy_prefix(tmp_path, data_dir) -> None:
    grid = write_grid(tmp_path / "g.yaml", ["translation"], rewards={"raml": {"token_tau": 0.15}}, max_train=16)
    (cfg,), source = configs(grid, data_dir)
    setup = recipe.prepare(cfg, None, source, torch.device("cpu"))
    setup.model.eval()  # no dropout: the two passes below see the same network
    batch = next(setup.data["train"].iterate(torch.Generator().manual_seed(0)))
    logits = setup.kind.forward(setup.model, batch)
    torch.manual_seed(11)
    out = setup.strategy.loss(logits, batch, setup.ctx)
    gold = batch["labels"]
    torch.manual_seed(11)
    targets, distance = sample_payoff(gold, gold != IGNORE, logits.shape[-1], 0.15, 1)
    assert 0 < float(out.terms["replaced"]) < 1 and distance.sum() > 0
    mask = gold != IGNORE
    noisy = setup.ctx.policy.log_prob(setup.model, batch, SimpleNamespace(
        actions=targets.masked_fill(~mask, setup.tokenizer.pad_token_id), mask=mask,
        index=torch.arange(gold.shape[0])))
    torch.testing.assert_close(out.loss, -noisy.token_logprob.sum() / mask.sum())
    gold_prefix = -logits.log_softmax(-1)[mask].gather(-1, targets[mask].unsqueeze(-1)).mean()
    assert not torch.allclose(out.loss, gold_prefix), "the noisy targets are also the decoder's inputs"
    setup.model.zero_grad()
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in setup.model.parameters())


def test_raml_runs_through_the_recipe_on_every_kind_of_task(tmp_path, data_dir) -> None:
    grid = write_grid(tmp_path / "g.yaml", ["ner", "sentiment", "translation"], rewards={"raml": {"tau": 0.5}},
                      epochs=1, max_train=16, max_eval=8)
    cfgs, source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    for cfg in cfgs:
        record = run(cfg, store, source, progress=False)
        assert record.status == "completed" and record.init_from is None
        train = record.history[0]["train"]
        assert {"ce", "raml_nll", "distance", "replaced"} <= set(train)
        if cfg.task != "sentiment":  # 16 labels at τ = 0.5 may all stay gold; tags and tokens are replaced
            assert train["replaced"] > 0, cfg.task


def test_parameters_and_family() -> None:
    strategy = check_declared_params("raml")
    assert strategy.family == "metric" and strategy.init_from is None and not strategy.needs_reference
    assert "ml_reward" not in REWARDS  # CE − λ·p_y: on two classes the same method as expected_accuracy
