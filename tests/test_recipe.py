"""The recipe's steps and the hooks strategies get: token-weighted gradient accumulation, several
optimiser steps per batch, run-level start, after-step; and a new kind (sentence pairs) added in one
place and run through the whole recipe on synthetic rows."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import kinds
from harness.config import RunConfig, settings_from, with_parent
from harness.run.data import DataSource
from harness.run.recipe import _optimiser_step, prepare, run, scored, split_batch
from harness.run import models
from harness.run.models import load_tokenizer
from harness.store import Store
from rewards.base import LossOutput, StepContext
from rewards.ce import CrossEntropy
from tasks import metrics
from tasks.base import TASKS, Task, get_task
from tests.helpers import configs, write_grid


def _gradients(setup, parts: list[dict], weights: list[float]) -> list[torch.Tensor]:
    parts = [kinds.to_device(p, setup.device) for p in parts]
    _optimiser_step(setup, parts, weights, [None] * len(parts), update=0, step=0)
    return [p.grad.detach().clone() for p in setup.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("task", ["ner", "translation"])
def test_accumulated_step_equals_the_full_batch_step(tmp_path, data_dir, task):
    """Two micro-batches weighted by their scored tokens give the whole batch's gradient; the plain
    mean of micro-batch means (what accumulation did before) does not, when they score unequal counts."""
    grid = write_grid(tmp_path / "g.yaml", [task], batch_size=16, max_train=16, max_grad_norm=1e9)
    (cfg,), source = configs(grid, data_dir)
    # lr 0 (the weights stay put between the gradients compared) is refused in a grid: set past the check
    cfg = dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, lr=0.0))
    setup = prepare(cfg, None, source, torch.device("cpu"))
    setup.model.eval()  # no dropout: both passes see the same network
    batch = next(setup.data["train"].iterate(torch.Generator().manual_seed(0)))
    full = _gradients(setup, [batch], [1.0])
    parts = split_batch(batch, 2)
    counts = [scored(p) for p in parts]
    assert counts[0] != counts[1], "the test needs micro-batches with different numbers of scored tokens"
    weighted = _gradients(setup, parts, [c / sum(counts) for c in counts])
    for a, b in zip(full, weighted):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    unweighted = _gradients(setup, parts, [0.5, 0.5])
    assert any(not torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(full, unweighted))


CALLS: dict[str, list] = {}


class _Hooked(CrossEntropy):
    """CE that counts the recipe's calls in CALLS: start once per run, rollout once per batch,
    `updates` optimiser steps per batch, after_step after each."""

    updates = 3

    def __post_init__(self) -> None:
        self.calls = CALLS
        self.calls.update(start=[], rollout=[], loss=[], after_step=[])

    def start(self, ctx: StepContext) -> None:
        self.calls["start"].append(ctx.step)

    def rollout(self, batch, ctx: StepContext):
        assert not torch.is_grad_enabled()
        self.calls["rollout"].append(ctx.step)
        return {"rows": len(batch["index"])}

    def loss(self, logits, batch, ctx: StepContext) -> LossOutput:
        assert ctx.rollout == {"rows": len(batch["index"])}
        self.calls["loss"].append((ctx.step, ctx.update))
        return super().loss(logits, batch, ctx)

    def after_step(self, ctx: StepContext) -> None:
        self.calls["after_step"].append(ctx.step)


def test_strategies_take_several_updates_per_batch_with_one_rollout(tmp_path, data_dir, temporary_reward):
    temporary_reward("test_hooked", _Hooked)
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], rewards=["test_hooked"], epochs=2, batch_size=8,
                      max_train=16, max_eval=8, log_every=1)
    (cfg,), source = configs(grid, data_dir)
    record = run(cfg, Store(tmp_path / "s"), source, progress=False)
    calls = CALLS
    assert calls["start"] == [0]
    assert calls["rollout"] == [0, 3, 6, 9], "one rollout per batch (2 batches x 2 epochs), before its updates"
    assert calls["loss"] == [(s, s % 3) for s in range(12)]
    assert calls["after_step"] == list(range(1, 13))
    assert [s["step"] for s in record.steps] == list(range(1, 13))
    lrs = [s["lr"] for s in record.steps]
    assert lrs[-1] == 0.0 and lrs[0] == lrs[1] > lrs[2], "the schedule runs over batches: it moves after a batch's 3 steps"


# ---- a new kind in one place: sentence pairs ---------------------------------------------------

def _read_pairs(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        text, text_pair, label = line.split("\t")
        rows.append({"text": text, "text_pair": text_pair, "label": int(label)})
    return rows


@pytest.fixture
def pair_task(tmp_path):
    """Synthetic pairs whose label shows only in the second text (it ends in "good" or "bad")."""
    words = ["dog", "cat", "park", "runs", "sleeps", "red", "ball", "man", "woman", "house"]
    generator = torch.Generator().manual_seed(0)
    lines = []
    for i in range(96):
        premise, hypothesis = (" ".join(words[j] for j in torch.randint(0, 10, (4,), generator=generator).tolist())
                               for _ in range(2))
        lines.append(f"{premise}\t{hypothesis} {'good' if i % 2 else 'bad'}\t{i % 2}")
    for split in ("train", "validation", "test"):
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    task = Task(name="test_pairs", kind="pair_classification", description="synthetic sentence pairs",
                local_files={s: (f"{s}.tsv",) for s in ("train", "validation", "test")}, read_local=_read_pairs,
                hub_id="none", hub_config=None, hub_splits={}, from_hub=lambda row, features: row,
                score=metrics.classification_scores, aggregate=metrics.classification_aggregate,
                sentence_score=metrics.classification_sentence, main_metric="accuracy", default_model="tiny-bert",
                labels=("bad", "good"), max_source_length=32)
    TASKS[task.name] = task
    yield task
    TASKS.pop(task.name)


def test_pair_kind_encodes_both_texts_with_segment_ids(pair_task):
    tokenizer = load_tokenizer("tiny-bert")
    kind = kinds.get_kind("pair_classification")
    encoded = kind.encode(pair_task, {"text": ["a dog runs"], "text_pair": ["a cat sleeps"], "label": [1]}, tokenizer, None)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert pieces == ["[CLS]", "a", "dog", "runs", "[SEP]", "a", "cat", "sleeps", "[SEP]"]
    assert encoded["token_type_ids"][0] == [0] * 5 + [1] * 4
    batch = kind.collate(pair_task, [{**{k: v[0] for k, v in encoded.items()}, "index": 0}], tokenizer.pad_token_id, None)
    assert batch["token_type_ids"].tolist() == [[0] * 5 + [1] * 4]


def test_pair_task_runs_through_the_recipe(tmp_path, pair_task):
    settings = settings_from("test", {"model": "tiny-bert", "epochs": 6, "batch_size": 8, "lr": 3e-3, "log_every": 2,
                                     "patience": 6})
    source = DataSource(data_dir=tmp_path)
    cfg = RunConfig(task="test_pairs", reward="ce", seed=1, settings=settings, data=source.describe(pair_task))
    record = run(cfg, Store(tmp_path / "s"), source, progress=False)
    assert record.status == "completed" and len(record.test_examples) == 96
    losses = [h["train"]["loss"] for h in record.history]
    assert losses[-1] < losses[0]
    assert record.test["accuracy"] > 60, "the label is in the second text: the model must see it"


def test_bf16_precision_autocasts_on_the_cpu_and_is_recorded(tmp_path, data_dir):
    """`precision: bf16` runs the forward passes (training, evaluation, sampling in `start`) under CPU
    bf16 autocast with fp32 weights; unset, a CPU run stays fp32; the record says which."""
    from harness.config import ConfigError
    from harness.run.recipe import uses_bf16

    assert uses_bf16(None, torch.device("cuda")) and not uses_bf16(None, torch.device("cpu"))
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        uses_bf16("fp16", torch.device("cpu"))
    grid = write_grid(tmp_path / "g.yaml", ["sentiment"], batch_size=8, max_train=16, max_eval=8, epochs=1,
                      precision="bf16", max_validation=4)
    (cfg,), source = configs(grid, data_dir)
    setup = prepare(cfg, None, source, torch.device("cpu"))
    assert setup.bf16 and setup.ctx.bf16
    assert len(setup.tables["validation"]) == 4 and len(setup.tables["test"]) == 8  # max_validation: selection only
    batch = next(setup.data["train"].iterate(torch.Generator().manual_seed(0)))
    with setup.autocast:
        logits = setup.kind.forward(setup.model, batch)
    assert logits.dtype == torch.bfloat16 and next(setup.model.parameters()).dtype == torch.float32
    record = run(cfg, Store(tmp_path / "s"), source, progress=False)
    assert record.status == "completed" and record.environment["precision"] == "bf16"
    assert "cpu_bf16" in record.environment and record.environment["threads"] >= 1


def test_parameters_the_checkpoint_lacked_get_new_lr_scale(tmp_path, data_dir, caplog):
    """bert2bert's cross-attention and LM-head transform start at random while the rest is pretrained:
    `new_lr_scale` multiplies their rate only, and not in a run from a checkpoint, where nothing is new;
    a pretrained tagger's new parameters are its classifier; a model without new parameters says the
    setting has nothing to scale."""
    grid = write_grid(tmp_path / "g.yaml", ["translation"], rewards=["ce", "ce_continued"], epochs=1,
                      max_train=8, max_eval=4, new_lr_scale=10.0)
    (cfg, continued), source = configs(grid, data_dir)
    store = Store(tmp_path / "s")
    run(cfg, store, source, progress=False)
    child = prepare(with_parent(continued), store, source, torch.device("cpu"))
    assert not kinds.base.new_parameters(child.model)
    assert {group["initial_lr"] for group in child.optimizer.param_groups} == {cfg.settings.lr}
    setup = prepare(cfg, None, source, torch.device("cpu"))
    rate = {id(p): group["initial_lr"] for group in setup.optimizer.param_groups for p in group["params"]}
    names = dict(setup.model.named_parameters())
    new = {n for n in names if n.startswith("decoder.") and ("crossattention" in n or ".cls." in n)}
    assert new and kinds.base.new_parameters(setup.model) == new
    assert all(rate[id(p)] == pytest.approx(10 * cfg.settings.lr if n in new else cfg.settings.lr)
               for n, p in names.items())
    weight_decay = {id(p): group["weight_decay"] for group in setup.optimizer.param_groups for p in group["params"]}
    assert all(weight_decay[id(p)] == (cfg.settings.weight_decay if p.dim() > 1 else 0.0) for p in names.values())

    tokenizer = load_tokenizer("minilm")
    tagger = kinds.get_kind("tagging").load(str(models.minilm_path()), get_task("ner"), tokenizer)
    assert kinds.base.new_parameters(tagger) == {"classifier.weight", "classifier.bias"}

    grid = write_grid(tmp_path / "h.yaml", ["sentiment"], max_train=8, max_eval=4, new_lr_scale=10.0)
    (cfg,), source = configs(grid, data_dir)
    with caplog.at_level("WARNING", logger="harness"):
        prepare(cfg, None, source, torch.device("cpu"))
    assert "nothing to scale" in caplog.text
