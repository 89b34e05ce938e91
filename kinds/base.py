"""What differs by kind of model — tagging, classification, sequence-to-sequence — written once.

For each kind: how rows become token ids (`encode`), how a batch is padded (`collate`), how the
model's logits are obtained (`forward`), how predictions are read back into the task's canonical
form (`predict`), and the `Policy` used by sampling-based reward strategies. Tasks only declare
their data and metrics (`tasks.base.Task`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from tasks.base import Task

IGNORE = -100  # the label of positions that are not scored (PyTorch's cross-entropy ignore_index)
MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


@dataclass
class Samples:
    """Outputs sampled from the policy, `num_samples` per input row, flattened to N rows.

    actions: [N] label ids, or [N, L] tag ids / generated token ids.
    mask:    same shape as actions; True where an action was taken (not padding).
    logprob: [N] summed log-probability of each sample under the model, with gradient.
    token_logprob: [N] or [N, L] per-action log-probabilities, with gradient.
    index:   [N] the batch row each sample belongs to.
    """

    actions: torch.Tensor
    mask: torch.Tensor
    logprob: torch.Tensor
    token_logprob: torch.Tensor
    index: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.reshape(self.mask.shape[0], -1).sum(-1)


class Policy(Protocol):
    """Sampling and scoring, implemented once per task kind in `kinds`."""

    def sample(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples: ...

    def log_prob(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], samples: Samples) -> Samples:
        """Re-scores `samples` under `model` (e.g. the reference model), returning new log-probs."""
        ...

    def score(self, samples: Samples, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[N] the task's sentence-level metric in [0, 1] of each sample against its reference."""
        ...

    def token_correct(self, samples: Samples, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-action correctness against the reference: 1.0 / 0.0, shaped like `samples.actions`."""
        ...

    def features(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] features of each (input, output) pair."""
        ...


# ---- encoding and batching ------------------------------------------------------------------

def encode(task: Task, rows: dict[str, list[Any]], tokenizer: Any, decoder_start: int | None) -> dict[str, list]:
    """Tokenises a batch of canonical rows (a `datasets.map(batched=True)` function)."""
    if task.kind == "tagging":
        enc = tokenizer(rows["tokens"], is_split_into_words=True, truncation=True,
                        max_length=task.max_source_length)
        label_ids = {tag: i for i, tag in enumerate(task.labels)}
        word_starts, labels = [], []
        for b, tags in enumerate(rows["tags"]):
            # First sub-token convention: a word's tag sits on its first sub-token; -1 = truncated away.
            starts = [-1] * len(tags)
            for position, word in enumerate(enc.word_ids(b)):
                if word is not None and starts[word] == -1:
                    starts[word] = position
            row_labels = [IGNORE] * len(enc["input_ids"][b])
            for word, position in enumerate(starts):
                if position >= 0:
                    row_labels[position] = label_ids[tags[word]]
            word_starts.append(starts)
            labels.append(row_labels)
        return {"input_ids": enc["input_ids"], "word_starts": word_starts, "labels": labels}
    if task.kind == "classification":
        enc = tokenizer(rows["text"], truncation=True, max_length=task.max_source_length)
        return {"input_ids": enc["input_ids"], "labels": list(rows["label"])}
    enc = tokenizer(rows["source"], truncation=True, max_length=task.max_source_length)
    targets = tokenizer(rows["target"], truncation=True, max_length=task.max_target_length + 1)["input_ids"]
    # BERT-style tokenizers put [CLS] first, which is the decoder's start token, not a target.
    labels = [ids[1:] if ids and ids[0] == decoder_start else ids for ids in targets]
    return {"input_ids": enc["input_ids"], "labels": [ids[: task.max_target_length] for ids in labels]}


def _pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max((len(s) for s in seqs), default=0)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def collate(task: Task, features: list[dict[str, Any]], pad_id: int, decoder_start: int | None) -> dict[str, Any]:
    """Pads a list of encoded rows to the longest in the batch (dynamic padding)."""
    batch: dict[str, Any] = {"input_ids": _pad([f["input_ids"] for f in features], pad_id),
                             "attention_mask": _pad([[1] * len(f["input_ids"]) for f in features], 0),
                             "index": torch.tensor([f["index"] for f in features])}
    if task.kind == "classification":
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        return batch
    labels = _pad([f["labels"] for f in features], IGNORE)
    batch["labels"] = labels
    if task.kind == "tagging":
        batch["word_starts"] = [f["word_starts"] for f in features]
        batch["tags"] = [f["tags"] for f in features]
        return batch
    start = torch.full((labels.shape[0], 1), decoder_start, dtype=torch.long)
    shifted = torch.cat([start, labels[:, :-1]], dim=1)
    batch["decoder_attention_mask"] = (labels != IGNORE).long()  # position t reads shifted[t], predicts labels[t]
    batch["decoder_input_ids"] = shifted.masked_fill(shifted == IGNORE, pad_id)
    return batch


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def forward(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Logits of the model on a batch; seq2seq decoders run teacher-forced on the gold prefix."""
    return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits


# ---- prediction -----------------------------------------------------------------------------

@torch.no_grad()
def predict(task: Task, model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
            generation: dict[str, Any]) -> list[Any]:
    """Predictions in the task's canonical form: tag lists per word, label ids, or strings."""
    if task.kind == "seq2seq":
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             do_sample=False, **generation)
        return decode(tokenizer, out)
    best = forward(model, batch).argmax(-1).tolist()
    if task.kind == "classification":
        return best
    return [[task.labels[row[p]] if p >= 0 else "O" for p in starts]
            for row, starts in zip(best, batch["word_starts"])]


def decode(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True,
                                                      clean_up_tokenization_spaces=True)]


def references(task: Task, batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
    """The gold answers as the metric sees them.

    For tagging these are the tags of every word, also of words truncated away (which `predict`
    tags O, so truncation costs recall instead of vanishing); `scored_only` keeps just the words
    the model scores, aligned with sampled tag sequences.
    """
    labels = batch["labels"]
    if task.kind == "classification":
        return labels.tolist()
    if task.kind == "tagging":
        if not scored_only:
            return [list(tags) for tags in batch["tags"]]
        return [[task.labels[i] for i in row if i != IGNORE] for row in labels.tolist()]
    return decode(tokenizer, labels.masked_fill(labels == IGNORE, tokenizer.pad_token_id))


# ---- the policy view used by sampling-based strategies ---------------------------------------

class KindPolicy:
    """Samples actions from the model and scores them with the task's own sentence-level metric.

    Classification samples one label per input; tagging one tag per scored word position;
    seq2seq a whole output sequence (ancestral sampling with the KV cache, then a teacher-forced
    pass to get differentiable log-probabilities), at most `sample_length(batch)` tokens long.
    Samples of one input are adjacent (`index` = arange(B).repeat_interleave(K)), so per-input
    groups are a `view(B, K)`.
    """

    # Pure ancestral sampling: no truncation and none of the model's own repetition constraints,
    # so the teacher-forced log-probabilities are exactly those of the distribution sampled from.
    SAMPLING = dict(do_sample=True, top_k=0, top_p=1.0, temperature=1.0, repetition_penalty=1.0,
                    no_repeat_ngram_size=0)
    GREEDY = dict(do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0)

    def __init__(self, task: Task, tokenizer: Any, max_new_tokens: int, length_factor: float | None = None):
        self.task, self.tokenizer, self.max_new_tokens = task, tokenizer, max_new_tokens
        self.length_factor = length_factor  # samples stop at this × the batch's longest reference

    def sample_length(self, batch: dict[str, Any]) -> int:
        """New tokens a generated sample may take: max_new_tokens, and with a length factor f at most
        ⌈f · the longest reference of the batch⌉ (end-of-sequence included), at least 1."""
        if self.length_factor is None:
            return self.max_new_tokens
        longest = int((batch["labels"] != IGNORE).sum(-1).max())
        return max(1, min(self.max_new_tokens, math.ceil(self.length_factor * longest)))

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples:
        index = torch.arange(batch["input_ids"].shape[0], device=batch["input_ids"].device)
        index = index.repeat_interleave(num_samples)
        if self.task.kind == "seq2seq":
            return self._sample_sequences(model, batch, index, num_samples, greedy)
        logits = forward(model, batch) if logits is None else logits
        logits = logits.float().repeat_interleave(num_samples, dim=0)
        if greedy:
            actions = logits.argmax(-1)
        else:
            actions = torch.distributions.Categorical(logits=logits).sample()
        mask = self._action_mask(batch, index, actions)
        return self._with_logprobs(logits, actions, mask, index)

    def log_prob(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples) -> Samples:
        return self._with_logprobs(self._sample_logits(self._rescore(model, batch, samples), samples),
                                   samples.actions, samples.mask, samples.index)

    def features(self, model: torch.nn.Module, batch: dict[str, Any],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] float features of each (input, output) pair.

        For a learned reward model; one forward pass gives both, so the frozen reference model
        costs no more than the log-probabilities the KL diagnostic needs anyway. The features are
        [input; output; statistics], from the model's last hidden states:
          input:  the input's mean-pooled hidden state (the encoder's, for seq2seq);
          output: labels and tags: the mean over actions of onehot(a_t) ⊗ h_t, h_t the hidden
                  state of the tagged token (of the pooled input, for a label), so the head sees
                  which class was chosen where (C·H numbers); sequences: the decoder's hidden
                  states over the sample, mean-pooled (H numbers);
          statistics: the mean log p(a_t), the fraction of actions that are the model's argmax
                  and log(1 + number of actions), i.e. how much the model itself believes the sample.
        """
        out = self._rescore(model, batch, samples, output_hidden_states=True)
        logits = self._sample_logits(out, samples)
        actions, mask, index = samples.actions, samples.mask, samples.index
        n = actions.shape[0]
        lengths = samples.lengths.clamp_min(1).unsqueeze(-1).float()
        if self.task.kind == "seq2seq":
            source = _mean_pool(out.encoder_last_hidden_state.float(), batch["attention_mask"][index])
            output = _mean_pool(out.decoder_hidden_states[-1].float(), mask)
        else:
            hidden = out.hidden_states[-1].float()
            pooled = _mean_pool(hidden, batch["attention_mask"])
            source = pooled[index]
            at_action = source.unsqueeze(1) if self.task.kind == "classification" else hidden[index]
            chosen = F.one_hot(actions.reshape(n, -1), logits.shape[-1]).float() * mask.reshape(n, -1, 1)
            output = torch.einsum("nlc,nlh->nch", chosen, at_action).flatten(1) / lengths
        rescored = self._with_logprobs(logits, actions, mask, index)
        agree = ((logits.argmax(-1) == actions) & mask).reshape(n, -1).sum(-1, keepdim=True) / lengths
        stats = torch.cat([rescored.logprob.unsqueeze(-1) / lengths, agree, torch.log1p(lengths)], dim=-1)
        return rescored, torch.cat([source, output, stats], dim=-1)

    def score(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        predictions = self._readable(samples)
        refs = references(self.task, batch, self.tokenizer, scored_only=True)
        values = [self.task.sentence_score(p, refs[i]) for p, i in zip(predictions, samples.index.tolist())]
        return torch.tensor(values, dtype=torch.float32, device=samples.actions.device)

    def token_correct(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        gold = batch["labels"][samples.index]
        if gold.shape[-1] < samples.actions.shape[-1]:  # generated longer than the reference
            gold = F.pad(gold, (0, samples.actions.shape[-1] - gold.shape[-1]), value=IGNORE)
        gold = gold[..., : samples.actions.shape[-1]] if gold.dim() > 1 else gold
        return ((samples.actions == gold) & samples.mask).float()

    # -- helpers --

    def _action_mask(self, batch: dict[str, Any], index: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if self.task.kind == "classification":
            return torch.ones_like(actions, dtype=torch.bool)
        return batch["labels"][index] != IGNORE

    def _rescore(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples,
                 output_hidden_states: bool = False) -> Any:
        """The model's output for the samples: per input row (labels, tags) or per sample (sequences)."""
        if self.task.kind == "seq2seq":
            return self._teacher_forced(model, batch, samples.actions, samples.index,
                                        output_hidden_states=output_hidden_states)
        return model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}, output_hidden_states=output_hidden_states)

    def _sample_logits(self, out: Any, samples: Samples) -> torch.Tensor:
        logits = out.logits.float()
        return logits if self.task.kind == "seq2seq" else logits[samples.index]

    @staticmethod
    def _with_logprobs(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
                       index: torch.Tensor) -> Samples:
        token_logprob = torch.log_softmax(logits.float(), -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        token_logprob = torch.where(mask, token_logprob, 0.0)  # not `* mask`: −inf · 0 would be NaN
        logprob = token_logprob.reshape(token_logprob.shape[0], -1).sum(-1)
        return Samples(actions=actions, mask=mask, logprob=logprob, token_logprob=token_logprob, index=index)

    def _sample_sequences(self, model: torch.nn.Module, batch: dict[str, Any], index: torch.Tensor,
                          num_samples: int, greedy: bool) -> Samples:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 num_beams=1, num_return_sequences=num_samples,
                                 max_new_tokens=self.sample_length(batch),
                                 **(self.GREEDY if greedy else self.SAMPLING))
        model.train(was_training)
        actions = out[:, 1:]  # drop the decoder start token
        config = model.generation_config
        eos = torch.tensor(_ids(config.eos_token_id), dtype=actions.dtype, device=actions.device)
        pad = self.tokenizer.pad_token_id if config.pad_token_id is None else config.pad_token_id
        # Keep tokens up to and including the first end-of-sequence; everything after is padding.
        # (A pad token sampled before that is an action like any other.)
        is_eos = torch.isin(actions, eos).long()
        mask = (is_eos.cumsum(-1) - is_eos) == 0
        actions = actions.masked_fill(~mask, pad)
        logits = self._teacher_forced(model, batch, actions, index).logits.float()
        return self._with_logprobs(logits, actions, mask, index)

    @staticmethod
    def _teacher_forced(model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor,
                        index: torch.Tensor, output_hidden_states: bool = False) -> Any:
        """The decoder run on `actions`; the encoder runs once per input, not once per sample."""
        start = model.generation_config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
        decoder_input_ids = torch.cat([torch.full_like(actions[:, :1], start), actions[:, :-1]], dim=1)
        encoded = model.get_encoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return model(encoder_outputs=(encoded.last_hidden_state[index],),
                     attention_mask=batch["attention_mask"][index], decoder_input_ids=decoder_input_ids,
                     output_hidden_states=output_hidden_states)

    def _readable(self, samples: Samples) -> list[Any]:
        actions = samples.actions
        if self.task.kind == "classification":
            return actions.tolist()
        if self.task.kind == "tagging":
            return [[self.task.labels[a] for a, m in zip(row, keep) if m]
                    for row, keep in zip(actions.tolist(), samples.mask.tolist())]
        return decode(self.tokenizer, actions)


def _ids(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[N, L, H] → [N, H]: the mean over positions where `mask` is set (0 where none is)."""
    weights = mask.reshape(*hidden.shape[:2], 1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1)
