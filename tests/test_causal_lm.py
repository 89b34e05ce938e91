"""The decoder-only kind: prompt → completion encoding, loss on the completion only, left-padded
generation whose log-probabilities do not depend on padding, and every strategy family end to end."""
from __future__ import annotations

import json

import pytest
import torch

import kinds
from harness.cli import main
from harness.run.models import load_model, load_tokenizer, model_kind
from kinds import IGNORE
from tasks.base import get_task
from tests.helpers import check_chunked_scoring, write_grid

TOKENIZER = load_tokenizer("tiny-gpt")
KIND = kinds.get_kind("causal_lm")
ROWS = {"source": ["Ein Hund läuft.", "Zwei Männer gehen durch den Park und reden."],
        "target": ["A dog runs.", "Two men walk through the park talking."]}


def batch_of(task_name: str = "translation", rows: dict | None = None) -> dict:
    task = get_task(task_name)
    rows = rows or ROWS
    encoded = KIND.encode(task, rows, TOKENIZER, None)
    features = [{**{k: v[i] for k, v in {**rows, **encoded}.items()}, "index": i} for i in range(len(rows["source"]))]
    return KIND.collate(task, features, TOKENIZER.pad_token_id, None)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return load_model("tiny-gpt", get_task("translation"), TOKENIZER).eval()


def test_text_to_text_tasks_run_as_causal_lm_on_decoder_only_models():
    translation = get_task("translation")
    assert model_kind(translation, "tiny-gpt").name == "causal_lm"
    assert model_kind(translation, "tiny-bert2bert").name == "seq2seq"
    assert model_kind(translation, "minilm2minilm").name == "seq2seq"
    with pytest.raises(ValueError, match="cannot run on a decoder model"):
        model_kind(get_task("ner"), "tiny-gpt")


def test_prompt_then_completion_and_labels_predict_the_next_completion_token():
    batch = batch_of()
    ids, labels = batch["input_ids"], batch["labels"]
    first = TOKENIZER.decode(ids[0], skip_special_tokens=True)
    assert first.startswith("translate german to english. german : ein hund lauft.") and first.endswith("a dog runs.")
    for row in range(2):
        scored = (labels[row] != IGNORE).nonzero().flatten()
        # logits at t predict token t + 1: the scored labels are the next input tokens, ending with [SEP]
        assert torch.equal(labels[row, scored], ids[row, scored + 1])
        assert labels[row, scored[-1]] == TOKENIZER.sep_token_id
        completion = TOKENIZER.decode(labels[row, scored], skip_special_tokens=True)
        assert completion == ROWS["target"][row].lower()
    assert KIND.references(get_task("translation"), batch, TOKENIZER) == ROWS["target"]  # the raw text
    # left-padded prompts for generation: the shorter prompt is padded on the left
    assert batch["prompt_mask"][0, 0] == 0 and batch["prompt_mask"][0, -1] == 1 and batch["prompt_mask"][1].all()


def test_only_the_source_is_truncated_so_the_instruction_survives():
    task = get_task("translation")
    long = {"source": [" ".join(["the"] * 300)], "target": ["word"]}  # "the": one token
    encoded = KIND.encode(task, long, TOKENIZER, None)
    prompt = TOKENIZER.decode(encoded["input_ids"][0][: encoded["prompt_length"][0]])
    assert prompt.endswith("english :") and prompt.count("the") == task.max_source_length


def test_sample_log_probabilities_do_not_depend_on_padding():
    """Each sample re-scored alone, unpadded, has the log-probability it had in its left-padded batch."""
    model, batch = tiny_model(), batch_of()
    policy = KIND.policy(get_task("translation"), TOKENIZER, max_new_tokens=6)
    torch.manual_seed(1)
    samples = policy.sample(model, batch, None, num_samples=2)
    assert samples.index.tolist() == [0, 0, 1, 1]
    for n in range(4):
        row = samples.index[n].item()
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()]
        length = int(samples.mask[n].sum())
        ids = torch.cat([prompt, samples.actions[n, :length]]).unsqueeze(0)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt) - 1: len(prompt) - 1 + length].log_softmax(-1)
        alone = logits.gather(-1, samples.actions[n, :length].unsqueeze(-1)).sum()
        torch.testing.assert_close(samples.logprob[n].detach(), alone, atol=1e-4, rtol=1e-5)


def test_chunked_teacher_forcing_is_the_one_pass_scoring():
    policy = KIND.policy(get_task("translation"), TOKENIZER, max_new_tokens=6)
    check_chunked_scoring(policy, tiny_model(), batch_of(), num_samples=3)


def test_greedy_sample_is_the_prediction_and_features_rescore_like_log_prob():
    model, batch = tiny_model(), batch_of()
    task = get_task("translation")
    policy = KIND.policy(task, TOKENIZER, max_new_tokens=6)
    greedy = policy.sample(model, batch, None, num_samples=1, greedy=True)
    predicted = KIND.predict(task, model, batch, TOKENIZER, {"num_beams": 1, "max_new_tokens": 6})
    assert kinds.base.decode(TOKENIZER, greedy.actions) == predicted
    with torch.no_grad():
        rescored, features = policy.features(model, batch, greedy)
    torch.testing.assert_close(rescored.logprob, policy.log_prob(model, batch, greedy).logprob)
    assert features.shape == (2, 2 * model.config.n_embd + 3) and torch.isfinite(features).all()


FAMILIES = ["ce", "focal", "soft_f1", "scst", "constant_reward"]  # baseline, token, metric, sampling, control


def test_every_family_runs_end_to_end_on_a_decoder_only_model(tmp_path, data_dir):
    rewards = {name: {"num_samples": 2} if name in ("scst", "constant_reward") else {} for name in FAMILIES}  # K: cost only
    grid = write_grid(tmp_path / "g.yaml", ["translation", "summarization"], rewards=rewards, epochs=1,
                      max_train=16, max_eval=8, model="tiny-gpt", max_source_length=48)
    grid.write_text(grid.read_text().replace("tiny-bert2bert", "tiny-gpt"))
    store = tmp_path / "s"
    main(["run", "--grid", "--grid-file", str(grid), "--store", str(store), "--data-dir", str(data_dir), "--quiet"])
    records = [json.loads(p.read_text()) for p in (store / "records").rglob("*.json")]
    assert len(records) == 10 and {r["status"] for r in records} == {"completed"}
    assert {r["model_kind"] for r in records} == {"causal_lm"}
    scst = next(r for r in records if r["config"]["reward"] == "scst" and r["config"]["task"] == "translation")
    assert scst["init_from"] is not None, "sampling strategies start from the ce run of the decoder-only model"
    assert all(isinstance(e["prediction"], str) for r in records for e in r["test_examples"])
    assert all(r["history"][0]["validation_length"] >= 0 for r in records)  # the length curve's points


@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_group_strategies_train_a_decoder_only_model(name):
    """A rollout of K samples per prompt, then the strategy's updates: finite, ratio 1 at first (grpo)."""
    import copy
    import dataclasses

    from rewards.base import StepContext, build_reward

    model, batch, task = tiny_model(), batch_of(), get_task("translation")
    strategy = build_reward(name)
    model.train(strategy.policy_dropout)
    ctx = StepContext(task=task, model=model, tokenizer=TOKENIZER, step=0, total_steps=4, forward=kinds.forward,
                      policy=KIND.policy(task, TOKENIZER, max_new_tokens=6), kind=KIND,
                      reference=copy.deepcopy(model).eval().requires_grad_(False))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with torch.no_grad():
        rollout = strategy.rollout(batch, ctx)
    for update in range(strategy.updates):
        out = strategy.loss(KIND.forward(model, batch), batch, dataclasses.replace(ctx, update=update, rollout=rollout))
        optimizer.zero_grad()
        out.loss.backward()
        assert torch.isfinite(out.loss) and all(torch.isfinite(v) for v in out.terms.values())
        optimizer.step()
        if name == "grpo" and update == 0:
            assert out.terms["ratio_deviation"] == 0 and abs(out.terms["kl"]) < 1e-6
