"""The policy of kinds whose actions are read off one forward pass: a label per input, a tag per word.

Shared by `classification`, `pair_classification` and `tagging`: sampling draws every action at
once from the logits the training step computed anyway, so a sample costs no extra forward pass.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from kinds.base import IGNORE, ModelKind, Samples, forward_output, mean_pool, with_logprobs

if TYPE_CHECKING:
    from tasks.base import Task


class PositionPolicy:
    """Samples one label per input (`per_row`) or one tag per scored position, and scores them with
    the task's own sentence-level metric. Samples of one input are adjacent
    (`index` = arange(B).repeat_interleave(K)), so per-input groups are a `view(B, K)`."""

    def __init__(self, kind: ModelKind, task: "Task", tokenizer: Any, per_row: bool):
        self.kind, self.task, self.tokenizer, self.per_row = kind, task, tokenizer, per_row

    def sample(self, model: torch.nn.Module, batch: dict[str, Any], logits: torch.Tensor | None,
               num_samples: int = 1, greedy: bool = False) -> Samples:
        index = torch.arange(batch["input_ids"].shape[0], device=batch["input_ids"].device)
        index = index.repeat_interleave(num_samples)
        logits = self.kind.forward(model, batch) if logits is None else logits
        logits = logits.float().repeat_interleave(num_samples, dim=0)
        if greedy:
            actions = logits.argmax(-1)
        else:
            actions = torch.distributions.Categorical(logits=logits).sample()
        if self.per_row:
            mask = torch.ones_like(actions, dtype=torch.bool)
        else:
            mask = batch["labels"][index] != IGNORE
        return with_logprobs(logits, actions, mask, index)

    def log_prob(self, model: torch.nn.Module, batch: dict[str, Any], samples: Samples,
                 logits: torch.Tensor | None = None) -> Samples:
        logits = (self._rescore(model, batch).logits if logits is None else logits).float()[samples.index]
        return with_logprobs(logits, samples.actions, samples.mask, samples.index)

    def features(self, model: torch.nn.Module, batch: dict[str, Any],
                 samples: Samples) -> tuple[Samples, torch.Tensor]:
        """`samples` re-scored under `model`, and [N, D] float features of each (input, output) pair:
        [input; output; statistics] from the model's last hidden states. input: the mean-pooled
        hidden state; output: the mean over actions of onehot(a_t) ⊗ h_t, h_t the hidden state of the
        tagged token (of the pooled input, for a label), so the head sees which class was chosen
        where (C·H numbers); statistics: the mean log p(a_t), the fraction of actions that are the
        model's argmax and log(1 + number of actions)."""
        out = self._rescore(model, batch, output_hidden_states=True)
        logits = out.logits.float()[samples.index]
        actions, mask, index = samples.actions, samples.mask, samples.index
        n = actions.shape[0]
        lengths = samples.lengths.clamp_min(1).unsqueeze(-1).float()
        hidden = out.hidden_states[-1].float()
        source = mean_pool(hidden, batch["attention_mask"])[index]
        at_action = source.unsqueeze(1) if self.per_row else hidden[index]
        chosen = F.one_hot(actions.reshape(n, -1), logits.shape[-1]).float() * mask.reshape(n, -1, 1)
        output = torch.einsum("nlc,nlh->nch", chosen, at_action).flatten(1) / lengths
        rescored = with_logprobs(logits, actions, mask, index)
        return rescored, torch.cat([source, output, statistics(rescored, logits, lengths)], dim=-1)

    def score(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        return score(self.task, self._readable(samples), self.kind.references(self.task, batch, self.tokenizer, True),
                     samples)

    def token_correct(self, samples: Samples, batch: dict[str, Any]) -> torch.Tensor:
        gold = batch["labels"][samples.index]
        return ((samples.actions == gold) & samples.mask).float()

    def _rescore(self, model: torch.nn.Module, batch: dict[str, Any], output_hidden_states: bool = False) -> Any:
        return forward_output(model, batch, output_hidden_states=output_hidden_states)

    def _readable(self, samples: Samples) -> list[Any]:
        if self.per_row:
            return samples.actions.tolist()
        return [[self.task.labels[a] for a, m in zip(row, keep) if m]
                for row, keep in zip(samples.actions.tolist(), samples.mask.tolist())]


def statistics(rescored: Samples, logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[N, 3] how much the model itself believes each sample: mean log p(a_t), the share of actions
    that are its argmax, log(1 + number of actions)."""
    n = rescored.actions.shape[0]
    agree = ((logits.argmax(-1) == rescored.actions) & rescored.mask).reshape(n, -1).sum(-1, keepdim=True) / lengths
    return torch.cat([rescored.logprob.unsqueeze(-1) / lengths, agree, torch.log1p(lengths)], dim=-1)


def score(task: "Task", predictions: list[Any], references: list[Any], samples: Samples) -> torch.Tensor:
    """[N] the task's sentence metric of each sample against its input's reference."""
    values = [task.sentence_score(p, references[i]) for p, i in zip(predictions, samples.index.tolist())]
    return torch.tensor(values, dtype=torch.float32, device=samples.actions.device)
