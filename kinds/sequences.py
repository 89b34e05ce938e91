"""The policy of kinds whose actions are generated token sequences (`seq2seq`, `causal_lm`).

A sample is drawn by ancestral sampling with the KV cache, then scored by one teacher-forced pass
that gives differentiable log-probabilities. The two kinds differ only in how they generate from
an input and how they run the model on (input, sample) pairs: `generate` and `teacher_forced`.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from transformers import LogitsProcessor, LogitsProcessorList

from kinds.base import IGNORE, ModelKind, Samples, decode, with_logprobs
from kinds.positions import score, statistics

if TYPE_CHECKING:
    from tasks.base import Task

# Pure ancestral sampling: no truncation and none of the model's own repetition constraints, so
# the teacher-forced log-probabilities are exactly those of the distribution sampled from. The draw
# itself is `InverseCDFDraw` under greedy decoding (see it), on inputs repeated K times (`repeat`).
GREEDY = dict(do_sample=False, repetition_penalty=1.0, no_repeat_ngram_size=0)
TEACHER_FORCED_CHUNK = 64  # samples scored together (`SequencePolicy.scored`)


class InverseCDFDraw(LogitsProcessor):
    """A logits processor that draws the next token from softmax(scores) by inverse transform — one
    uniform per row, a cumulative sum and a binary search — and returns scores whose argmax is that
    token, so greedy decoding yields an exact sample at temperature 1. `torch.multinomial`, which
    `generate(do_sample=True)` uses, draws one exponential variate per vocabulary entry: on this
    project's CPU a translation generation step of 256 samples took 374–387 ms that way and
    196–222 ms this way (`python benchmarks/sampler_cost.py --task translation`, BENCHMARKS.md)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(scores.float(), dim=-1).cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        token = torch.searchsorted(cdf, u).clamp_max(cdf.shape[-1] - 1)
        return torch.full_like(scores, -math.inf).scatter_(1, token, 0.0)


class SequenceKind(ModelKind):
    """What the sequence kinds share besides the policy: references are the data's raw target text
    (never the tokenizer's decoding of it, which an uncased or truncating tokenizer would alter), so
    metrics are comparable with published figures; rows carry it in the `target` column."""

    generates = True

    def references(self, task: "Task", batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
        return list(batch["target"])

    def gold(self, batch: dict[str, Any]) -> torch.Tensor:
        """[B, L] the reference output tokens (IGNORE after the end), as sampled actions are laid out."""
        return batch["labels"]

    def policy(self, task: "Task", tokenizer: Any, max_new_tokens: int, length_factor: float | None = None) -> "SequencePolicy":
        return SequencePolicy(self, task, tokenizer, max_new_tokens, length_factor)

    def generate(self, model: torch.nn.Module, batch: dict[str, Any], **settings: Any) -> torch.Tensor:
        """[B·K, L] the new tokens generated for each input (K = num_return_sequences)."""
        raise NotImplementedError

    def repeat(self, model: torch.nn.Module, batch: dict[str, Any], times: int) -> dict[str, Any]:
        """`batch` with every input `times` times in a row, as `generate` takes it (K samples per input)."""
        raise NotImplementedError

    def encode_once(self, model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        """`batch`, with whatever `teacher_forced` would compute from the inputs alone on every call
        (an encoder's states) computed now, so several calls on one batch share it."""
        return batch

    def teacher_forced(self, model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor,
                       index: torch.Tensor, output_hidden_states: bool = False) -> tuple[torch.Tensor, Any]:
        """(logits [N, L, V] predicting each action, the model output), the model run on (input, actions)."""
        raise NotImplementedError

    def pooled(self, out: Any, batch: dict[str, Any], index: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, H] the input's mean hidden state, [N, H] the sample's), from a teacher-forced output."""
        raise NotImplementedError


class SequencePolicy:
    """Samples whole outputs, at most `sample_length(batch)` tokens long, and scores them with the
    task's sentence-level metric. Samples of one input are adjacent (`index` = arange(B).repeat_interleave(K))."""

    def __init__(self, kind: SequenceKind, task: "Task", tokenizer: Any, max_new_tokens: int,
                 length_factor: float | None = None):
        self.kind, self.task, self.tokenizer, self.max_new_tokens = kind, task, tokenizer, max_new_tokens
        self.length_factor = length_factor  # samples stop at this × the batch's longest reference
        self.chunk = TEACHER_FORCED_CHUNK

    def sample_length(self, batch: dict[str, Any]) -> int:
        """New tokens a generated sample may take: max_new_tokens, and with a length factor f at most
        ⌈f · the longest reference of the batch⌉ (end-of-sequence included), at least 1."""
        if self.length_factor is None:
            return self.max_new_tokens
        longest = int((self.kind.gold(batch) != IGNORE).sum(-1).max())
        return max(1, min(self.max_new_tokens, math.ceil(self.length_factor * longest)))

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples:
        index = torch.arange(batch["input_ids"].shape[0], device=batch["input_ids"].device)
        index = index.repeat_interleave(num_samples)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            draw = {} if greedy else {"logits_processor": LogitsProcessorList([InverseCDFDraw()])}
            actions = self.kind.generate(model, self.kind.repeat(model, batch, num_samples), num_beams=1,
                                         max_new_tokens=self.sample_length(batch), **GREEDY, **draw)
        model.train(was_training)
        config = model.generation_config
        eos = torch.tensor(_ids(config.eos_token_id), dtype=actions.dtype, device=actions.device)
        pad = self.tokenizer.pad_token_id if config.pad_token_id is None else config.pad_token_id
        # Keep tokens up to and including the first end-of-sequence; everything after is padding.
        # (A pad token sampled before that is an action like any other.)
        is_eos = torch.isin(actions, eos).long()
        mask = (is_eos.cumsum(-1) - is_eos) == 0
        actions = actions.masked_fill(~mask, pad)
        return self.scored(model, batch, actions, mask, index)

    def log_prob(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples,
                 logits: torch.Tensor | None = None) -> Samples:
        """`logits` (teacher-forced on the gold output) are not those of the samples: a pass on them."""
        return self.scored(model, batch, samples.actions, samples.mask, samples.index)

    def scored(self, model: torch.nn.Module, batch: dict[str, Any], actions: torch.Tensor, mask: torch.Tensor,
               index: torch.Tensor) -> Samples:
        """`Samples` of `actions` with their teacher-forced log-probabilities under `model`, computed in
        chunks of `chunk` samples of similar length, each cut to its longest sample. K samples padded
        to the batch's longest one are mostly padding (one sample at the length cap widens all 256),
        and every padded position costs a pass through the full-vocabulary output layer and its
        log-softmax. The decoder is causal, so cutting trailing positions changes no log-probability;
        the inputs are encoded once for all chunks (`encode_once`)."""
        if actions.shape[0] <= self.chunk or actions.shape[1] == 0:
            logits, _ = self.kind.teacher_forced(model, batch, actions, index)
            return with_logprobs(logits.float(), actions, mask, index)
        lengths = mask.sum(-1)
        order = torch.argsort(lengths, descending=True, stable=True)
        chunks = order.split(self.chunk)
        widths = torch.stack([lengths[c].max() for c in chunks]).clamp_min(1).tolist()  # one host sync
        batch = self.kind.encode_once(model, batch)
        pieces = []
        for rows, width in zip(chunks, widths):
            logits, _ = self.kind.teacher_forced(model, batch, actions[rows, :width], index[rows])
            part = with_logprobs(logits.float(), actions[rows, :width], mask[rows, :width], index[rows])
            pieces.append(F.pad(part.token_logprob, (0, actions.shape[1] - width)))
        token_logprob = torch.cat(pieces)[torch.argsort(order)]
        return Samples(actions=actions, mask=mask, logprob=token_logprob.sum(-1), token_logprob=token_logprob,
                       index=index)

    def features(self, model: torch.nn.Module, batch: dict[str, Any],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] features [input; output; statistics]: the
        input's and the sample's mean-pooled hidden states, and how much the model believes the
        sample (see `kinds.positions.statistics`)."""
        logits, out = self.kind.teacher_forced(model, batch, samples.actions, samples.index, output_hidden_states=True)
        logits = logits.float()
        lengths = samples.lengths.clamp_min(1).unsqueeze(-1).float()
        source, output = self.kind.pooled(out, batch, samples.index, samples.mask)
        rescored = with_logprobs(logits, samples.actions, samples.mask, samples.index)
        return rescored, torch.cat([source, output, statistics(rescored, logits, lengths)], dim=-1)

    def score(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        return score(self.task, decode(self.tokenizer, samples.actions),
                     self.kind.references(self.task, batch, self.tokenizer, True), samples)

    def token_correct(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        gold = self.kind.gold(batch)[samples.index]
        if gold.shape[-1] < samples.actions.shape[-1]:  # generated longer than the reference
            gold = F.pad(gold, (0, samples.actions.shape[-1] - gold.shape[-1]), value=IGNORE)
        gold = gold[..., : samples.actions.shape[-1]]
        return ((samples.actions == gold) & samples.mask).float()


def _ids(value: int | list[int] | None) -> list[int]:
    return [] if value is None else [value] if isinstance(value, int) else list(value)

