"""Sentence-pair classification (premise / hypothesis: NLI such as MNLI or XNLI, paraphrase).

Canonical rows: {"text": str, "text_pair": str, "label": int}. Classification with both texts
encoded as one sequence, `[CLS] text [SEP] text_pair [SEP]`, and their segment ids.
"""
from __future__ import annotations

from typing import Any

from kinds.base import register_kind
from kinds.classification import Classification


class PairClassification(Classification):
    name = serves = "pair_classification"
    columns = ("token_type_ids",)

    def texts(self, rows: dict[str, list[Any]]) -> tuple[list[str], ...]:
        return rows["text"], rows["text_pair"]


PAIR_CLASSIFICATION = register_kind(PairClassification())
