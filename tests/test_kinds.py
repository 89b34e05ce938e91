"""Encoding, batching and prediction: sub-word alignment, decoder inputs, length grouping."""
from __future__ import annotations

import types

import datasets
import torch

from harness.run.data import Batches
from harness.run.models import load_tokenizer
from rewards.base import IGNORE
import kinds
from tasks.base import get_task

TOKENIZER = load_tokenizer("tiny-bert")


def encoded(task_name: str, rows: list[dict]) -> list[dict]:
    task = get_task(task_name)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    out = kinds.get_kind(task.kind).encode(task, columns, TOKENIZER, TOKENIZER.cls_token_id)
    return [{**rows[i], **{k: v[i] for k, v in out.items()}, "index": i} for i in range(len(rows))]


def test_ner_labels_sit_on_the_first_sub_token_of_each_word():
    rows = [{"tokens": ["Blackburn", "visited", "Xylophonists", "."], "tags": ["B-PER", "O", "B-MISC", "O"]}]
    (row,) = encoded("ner", rows)
    pieces = TOKENIZER.convert_ids_to_tokens(row["input_ids"])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    labels = get_task("ner").labels
    scored = [(pieces[p], labels[row["labels"][p]]) for p in range(len(pieces)) if row["labels"][p] != IGNORE]
    assert [tag for _, tag in scored] == rows[0]["tags"]
    assert [pieces[p] for p in row["word_starts"]] == [piece for piece, _ in scored]
    assert len(pieces) > len(rows[0]["tokens"]) + 2, "some words split into several sub-tokens"
    assert all(not pieces[p].startswith("##") for p in row["word_starts"])


def test_ner_predictions_map_back_to_words_and_truncated_words_get_O():
    task = get_task("ner")
    long = {"tokens": ["Paris"] + ["x"] * 200, "tags": ["B-LOC"] + ["O"] * 200}
    (row,) = encoded("ner", [long])
    assert row["word_starts"][0] == 1 and row["word_starts"][-1] == -1, "words past max length are truncated"
    batch = kinds.get_kind(task.kind).collate(task, [row], TOKENIZER.pad_token_id, None)

    class Stub(torch.nn.Module):  # predicts B-LOC everywhere
        def forward(self, input_ids, attention_mask):
            logits = torch.zeros(*input_ids.shape, len(task.labels))
            logits[..., task.labels.index("B-LOC")] = 1.0
            return types.SimpleNamespace(logits=logits)

    (pred,) = kinds.get_kind(task.kind).predict(task, Stub(), batch, TOKENIZER, {})
    assert len(pred) == len(long["tokens"])
    (gold,) = kinds.get_kind(task.kind).references(task, batch, TOKENIZER)
    assert gold == long["tags"], "truncated words stay in the reference and cost recall"
    (scored,) = kinds.get_kind(task.kind).references(task, batch, TOKENIZER, scored_only=True)
    assert scored == long["tags"][:sum(p >= 0 for p in row["word_starts"])]
    kept = sum(p >= 0 for p in row["word_starts"])
    assert pred[:kept] == ["B-LOC"] * kept and set(pred[kept:]) == {"O"}


def test_seq2seq_labels_drop_the_start_token_and_decoder_inputs_are_shifted():
    task = get_task("translation")
    rows = encoded("translation", [{"source": "Ein Hund läuft.", "target": "A dog runs."},
                                   {"source": "Zwei Männer.", "target": "Two men are walking in the park."}])
    assert rows[0]["labels"][0] != TOKENIZER.cls_token_id and rows[0]["labels"][-1] == TOKENIZER.sep_token_id
    batch = kinds.get_kind(task.kind).collate(task, rows, TOKENIZER.pad_token_id, TOKENIZER.cls_token_id)
    labels, dec = batch["labels"], batch["decoder_input_ids"]
    assert (dec[:, 0] == TOKENIZER.cls_token_id).all()
    short = len(rows[0]["labels"])
    assert dec[0, 1:short].tolist() == rows[0]["labels"][:-1]
    assert (labels[0, short:] == IGNORE).all() and (dec[0, short + 1:] == TOKENIZER.pad_token_id).all()
    assert batch["decoder_attention_mask"][0].sum() == short
    # references are the data's raw text, not the uncased tokenizer's decoding of the labels
    assert kinds.get_kind(task.kind).references(task, batch, TOKENIZER) == ["A dog runs.", "Two men are walking in the park."]


def test_batches_group_by_length_cover_every_row_once_and_repeat_with_the_seed():
    task = get_task("sentiment")
    texts = [" ".join(["word"] * n) for n in torch.randint(1, 60, (500,)).tolist()]
    rows = encoded("sentiment", [{"text": t, "label": i % 2} for i, t in enumerate(texts)])
    table = datasets.Dataset.from_list(rows)
    batches = Batches(kinds.get_kind(task.kind), task, table, batch_size=16, pad_id=0, start=None)
    order = batches.order(torch.Generator().manual_seed(3))
    assert sorted(i for b in order for i in b) == list(range(500))
    assert order == batches.order(torch.Generator().manual_seed(3))
    assert order != batches.order(torch.Generator().manual_seed(4))
    padded = sum(len(b) * max(batches.lengths[i] for i in b) for b in order)
    random_order = torch.randperm(500, generator=torch.Generator().manual_seed(0)).tolist()
    random_padded = sum(16 * max(batches.lengths[i] for i in random_order[s:s + 16]) for s in range(0, 500, 16))
    assert padded < 0.7 * random_padded, "length grouping cuts padding"
    evaluation = batches.order(None)
    flat = [batches.lengths[i] for b in evaluation for i in b]
    assert flat == sorted(flat, reverse=True)
