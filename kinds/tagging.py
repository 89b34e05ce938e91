"""Token classification: one tag per word, predicted on the word's first sub-token.

Canonical rows: {"tokens": list[str], "tags": list[str]} (IOB2 tag strings).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kinds.base import IGNORE, TINY, ModelKind, label_maps, pad, pretrained_with_head, register_kind
from kinds.positions import PositionPolicy
from tasks.metrics import calibration_stats

if TYPE_CHECKING:
    from tasks.base import Task


class Tagging(ModelKind):
    name = serves = "tagging"
    architectures = ("encoder",)  # the tiny test model; Hub models bring their own head
    columns = ("word_starts", "tags")

    def encode(self, task: "Task", rows: dict[str, list[Any]], tokenizer: Any, start: int | None) -> dict[str, list]:
        enc = tokenizer(rows["tokens"], is_split_into_words=True, truncation=True, max_length=task.max_source_length)
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

    def collate(self, task: "Task", features: list[dict[str, Any]], pad_id: int, start: int | None) -> dict[str, Any]:
        return {"input_ids": pad([f["input_ids"] for f in features], pad_id),
                "attention_mask": pad([[1] * len(f["input_ids"]) for f in features], 0),
                "index": torch.tensor([f["index"] for f in features]),
                "labels": pad([f["labels"] for f in features], IGNORE),
                "word_starts": [f["word_starts"] for f in features], "tags": [f["tags"] for f in features]}

    @torch.no_grad()
    def predict(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                generation: dict[str, Any]) -> list[Any]:
        return self._words(task, self.forward(model, batch), batch)

    @torch.no_grad()
    def evaluate_batch(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                       generation: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        """Calibration per scored token: every word's first sub-token within the truncation."""
        logits = self.forward(model, batch).float()
        probs, labels = logits.softmax(-1).cpu().numpy(), batch["labels"].cpu().numpy()
        scored = labels != IGNORE
        return self._words(task, logits, batch), [calibration_stats(p[keep], y[keep])
                                                  for p, y, keep in zip(probs, labels, scored)]

    @staticmethod
    def _words(task: "Task", logits: torch.Tensor, batch: dict[str, Any]) -> list[list[str]]:
        """Each word's tag from its first sub-token; O for words truncated away."""
        best = logits.argmax(-1).tolist()
        return [[task.labels[row[p]] if p >= 0 else "O" for p in starts] for row, starts in zip(best, batch["word_starts"])]

    def references(self, task: "Task", batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
        """The tags of every word, also of words truncated away (which `predict` tags O, so truncation
        costs recall instead of vanishing); `scored_only` keeps just the words the model scores,
        aligned with sampled tag sequences."""
        if not scored_only:
            return [list(tags) for tags in batch["tags"]]
        return [[task.labels[i] for i in row if i != IGNORE] for row in batch["labels"].tolist()]

    def policy(self, task: "Task", tokenizer: Any, max_new_tokens: int, length_factor: float | None = None) -> PositionPolicy:
        return PositionPolicy(self, task, tokenizer, per_row=False)

    def load(self, source: str, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification

        return pretrained_with_head(AutoModelForTokenClassification, source, **label_maps(task))

    def tiny(self, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification, BertConfig

        return AutoModelForTokenClassification.from_config(BertConfig(vocab_size=len(tokenizer), **TINY, **label_maps(task)))

    def trainer_collator(self, tokenizer: Any, model: torch.nn.Module) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def class_groups(self, task: "Task", classes: int, device: torch.device) -> torch.Tensor:
        """Entity types: B-X and I-X both map to X, O to none."""
        if len(task.labels) != classes:
            raise ValueError(f"the task has {len(task.labels)} tags but the logits have {classes} classes")
        types = [tag.split("-", 1)[1] if "-" in tag else None for tag in task.labels]
        names = list(dict.fromkeys(t for t in types if t is not None))
        groups = torch.zeros(classes, len(names), device=device)
        for index, entity in enumerate(types):
            if entity is not None:
                groups[index, names.index(entity)] = 1.0
        return groups


TAGGING = register_kind(Tagging())
