"""Sequence classification: one label per input text, read off the encoder's pooled output."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from kinds.base import TINY, ModelKind, label_maps, pad, pretrained_with_head, register_kind
from kinds.positions import PositionPolicy
from tasks.metrics import calibration_stats

if TYPE_CHECKING:
    from tasks.base import Task


class Classification(ModelKind):
    name = serves = "classification"
    architectures = ("encoder",)  # the tiny test model; Hub models bring their own head

    def texts(self, rows: dict[str, list[Any]]) -> tuple[list[str], ...]:
        """The text fields of a batch of canonical rows, as the tokenizer's positional arguments."""
        return (rows["text"],)

    def encode(self, task: "Task", rows: dict[str, list[Any]], tokenizer: Any, start: int | None) -> dict[str, list]:
        enc = tokenizer(*self.texts(rows), truncation=True, max_length=task.max_source_length)
        # Tokenizers without segment ids (RoBERTa's) return none: all zeros, as the model assumes.
        extra = {k: enc[k] if k in enc else [[0] * len(ids) for ids in enc["input_ids"]] for k in self.columns}
        return {"input_ids": enc["input_ids"], **extra, "labels": list(rows["label"])}

    def collate(self, task: "Task", features: list[dict[str, Any]], pad_id: int, start: int | None) -> dict[str, Any]:
        return {"input_ids": pad([f["input_ids"] for f in features], pad_id),
                "attention_mask": pad([[1] * len(f["input_ids"]) for f in features], 0),
                **{k: pad([f[k] for f in features], 0) for k in self.columns},
                "index": torch.tensor([f["index"] for f in features]),
                "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long)}

    @torch.no_grad()
    def predict(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                generation: dict[str, Any]) -> list[Any]:
        return self.forward(model, batch).argmax(-1).tolist()

    @torch.no_grad()
    def evaluate_batch(self, task: "Task", model: torch.nn.Module, batch: dict[str, Any], tokenizer: Any,
                       generation: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
        logits = self.forward(model, batch).float()
        probs, gold = logits.softmax(-1).cpu().numpy(), batch["labels"].cpu().numpy()
        return logits.argmax(-1).tolist(), [calibration_stats(probs[i: i + 1], gold[i: i + 1]) for i in range(len(gold))]

    def references(self, task: "Task", batch: dict[str, Any], tokenizer: Any, scored_only: bool = False) -> list[Any]:
        return batch["labels"].tolist()

    def policy(self, task: "Task", tokenizer: Any, max_new_tokens: int, length_factor: float | None = None) -> PositionPolicy:
        return PositionPolicy(self, task, tokenizer, per_row=True)

    def load(self, source: str, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return pretrained_with_head(AutoModelForSequenceClassification, source, **label_maps(task))

    def tiny(self, task: "Task", tokenizer: Any) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification, BertConfig

        return AutoModelForSequenceClassification.from_config(
            BertConfig(vocab_size=len(tokenizer), **TINY, **label_maps(task)))

    def trainer_collator(self, tokenizer: Any, model: torch.nn.Module) -> Any:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def trainer_rows(self, rows: Any) -> Any:
        return rows.select_columns(["input_ids", *self.columns, "labels"])

    def class_groups(self, task: "Task", classes: int, device: torch.device) -> torch.Tensor:
        """The positive class 1 when there are two classes, otherwise every class."""
        eye = torch.eye(classes, device=device)
        return eye[:, 1:] if classes == 2 else eye


CLASSIFICATION = register_kind(Classification())
