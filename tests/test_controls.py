"""The compute-matched control `ce_continued`: CE trained on from the `ce` checkpoint with exactly the
schedule, epochs and data order of every strategy that starts there."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import rewards  # noqa: F401  (registers the built-in strategies)
from harness.run import recipe
from harness.run.recipe import run
from harness.store import Store
from rewards.base import CONTINUED_CONTROL, REWARDS, build_reward
from tests.helpers import configs, write_grid

FROM_CE = sorted(name for name, cls in REWARDS.items() if cls.init_from == "ce")


def test_ce_continued_is_ce_started_from_the_ce_checkpoint():
    control = build_reward(CONTINUED_CONTROL)
    assert control.init_from == "ce" and control.family == "control" and control.params() == {}
    assert control.compared_with is None
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, -100])
    torch.testing.assert_close(control.loss(logits, {"labels": labels}, None).loss,
                               build_reward("ce").loss(logits, {"labels": labels}, None).loss)


def test_every_strategy_started_from_ce_is_compared_with_the_control():
    assert {"reinforce", "scst", "mrt", "reward_model", "rlhf", "dpo", "constant_reward"} <= set(FROM_CE)
    for name in FROM_CE:
        expected = None if name == CONTINUED_CONTROL else CONTINUED_CONTROL
        assert REWARDS[name].compared_with == expected, name
    assert all(cls.compared_with is None for cls in REWARDS.values() if cls.init_from is None)


def test_strategies_started_from_ce_get_the_controls_schedule_epochs_and_data_order(tmp_path, data_dir,
                                                                                     monkeypatch):
    """Every optimiser step of every strategy that starts from the ce checkpoint sees the same batches
    (rows, order, epoch) at the same learning rate as `ce_continued`, from the same weights."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", *FROM_CE], epochs=2, batch_size=8,
                      max_train=24, max_eval=8, log_every=1)
    cfgs, source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    ce = run(cfgs[0], store, source, progress=False)
    assert cfgs[0].reward == "ce" and store.checkpoint_path(ce.hash).exists()
    steps: dict[str, list] = {}
    original = recipe._optimiser_step

    def spy(setup, parts, weights, rollouts, update, step, diagnose):
        if update == 0:  # one entry per batch, whatever the strategy's updates per batch
            steps.setdefault(setup.cfg.reward, []).append(
                ([p["index"].tolist() for p in parts], setup.scheduler.get_last_lr()[0]))
        return original(setup, parts, weights, rollouts, update, step, diagnose)

    monkeypatch.setattr(recipe, "_optimiser_step", spy)
    records = {cfg.reward: run(cfg, store, source, progress=False) for cfg in cfgs[1:]}
    control = steps[CONTINUED_CONTROL]
    assert len(control) == 2 * 3, "three batches of 8 in each of two epochs"
    assert [rows for rows, _ in control[:3]] != [rows for rows, _ in control[3:]], "a fresh order every epoch"
    lrs = [lr for _, lr in control]  # 6 steps: no warm-up step (int(0.1 * 6) = 0), then linear decay
    assert lrs[0] == cfgs[0].settings.lr and lrs == sorted(lrs, reverse=True), "a fresh schedule of its own"
    for name in FROM_CE:
        assert records[name].init_from == ce.hash, name
        assert records[name].config["settings"] == records[CONTINUED_CONTROL].config["settings"], name
        assert steps[name] == control, name
        assert len(records[name].history) == len(records[CONTINUED_CONTROL].history) == 2, name
        assert records[name].history[0]["validation_length"] is None  # labels have no output length
    # rlhf and dpo build their preference set (and rlhf its reward model) once, in `start`: timed apart
    # from the epochs, whose time the per-epoch cost compares with ce's
    timing = {name: records[name].timing for name in FROM_CE}
    assert timing["rlhf"]["start_seconds"] > 0 and timing["dpo"]["start_seconds"] > 0
    assert all(t["start_seconds"] + t["train_seconds"] <= t["total_seconds"] for t in timing.values())


def test_runs_from_a_checkpoint_take_the_continued_epochs_and_rows(tmp_path, data_dir):
    """`continued_epochs` and `continued_max_train` shorten the second phase only: ce trains its own
    epochs on its rows; ce_continued, from ce's checkpoint, the continued ones."""
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["ce", CONTINUED_CONTROL], epochs=2, batch_size=8,
                      max_train=24, max_eval=8, continued_epochs=1, continued_max_train=8)
    (ce_cfg, cfg), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    ce, continued = run(ce_cfg, store, source, progress=False), run(cfg, store, source, progress=False)
    assert continued.init_from == ce.hash and cfg.parent == ce_cfg.run_hash()
    assert len(ce.history) == 2 and len(continued.history) == 1
    trained = [round(h["samples_per_second"] * h["train_seconds"]) for h in (ce.history[0], continued.history[0])]
    assert trained == [24, 8]


def _after_ce(tmp_path, data_dir, task: str, strategies) -> tuple:
    """Runs ce, then prepares the second of `strategies`: (its setup, ce's checkpoint, both configs)."""
    grid = write_grid(tmp_path / "g.yaml", [task], rewards=strategies, epochs=1, max_train=16, max_eval=8)
    (ce_cfg, cfg), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    ce = run(ce_cfg, store, source, progress=False)
    setup = recipe.prepare(cfg, store, source, torch.device("cpu"))
    assert setup.init_from == ce.hash
    return setup, store.load_checkpoint(ce.hash), ce_cfg, cfg


def test_the_controls_first_step_is_cross_entropy_from_the_ce_weights(tmp_path, data_dir):
    setup, checkpoint, ce_cfg, control_cfg = _after_ce(tmp_path, data_dir, "ner", ["ce", CONTINUED_CONTROL])
    for key, value in setup.model.state_dict().items():
        torch.testing.assert_close(value, checkpoint[key], rtol=0, atol=0)
    assert dataclasses.asdict(control_cfg.settings) == dataclasses.asdict(ce_cfg.settings)


@pytest.mark.parametrize("task", ["ner", "translation"])
def test_kl_reference_starts_from_and_is_held_to_the_ce_checkpoint(tmp_path, data_dir, task):
    """The reference is the ce checkpoint of the same seed, not the initial model: at the first step the
    KL is 0 and the gradient is CE's (dropout off: the frozen reference never applies it)."""
    assert build_reward("kl_reference").init_from == "ce" and REWARDS["kl_reference"].needs_reference
    setup, checkpoint, _, _ = _after_ce(tmp_path, data_dir, task, {"ce": {}, "kl_reference": {"beta": 1.0}})
    for weights in (setup.ctx.reference.state_dict(), setup.model.state_dict()):
        assert weights.keys() == checkpoint.keys()
        for key, value in weights.items():
            torch.testing.assert_close(value, checkpoint[key], rtol=0, atol=0)
    setup.model.eval()
    batch = next(setup.data["train"].iterate(torch.Generator().manual_seed(0)))
    grads = {}
    for name in ("kl_reference", "ce"):
        setup.model.zero_grad(set_to_none=True)
        out = build_reward(name, {"beta": 1.0} if name == "kl_reference" else {}).loss(
            setup.kind.forward(setup.model, batch), batch, setup.ctx)
        out.loss.backward()
        grads[name] = [p.grad.clone() for p in setup.model.parameters() if p.grad is not None]
        if name == "kl_reference":
            assert float(out.terms["kl"]) == 0.0
            torch.testing.assert_close(out.loss, out.terms["ce"])
    assert len(grads["ce"]) == len(grads["kl_reference"]) > 0
    for kl_grad, ce_grad in zip(grads["kl_reference"], grads["ce"]):
        torch.testing.assert_close(kl_grad, ce_grad)
