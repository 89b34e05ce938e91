"""Scores are computed against the data's raw text: the references a run scores against are the
file's lines, and the harness's corpus BLEU equals the sacreBLEU command line on the same two files;
calibration follows its standard definitions."""
from __future__ import annotations

import gzip
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import kinds
from harness.run.data import Batches, DataSource, load_split
from harness.run.models import load_tokenizer
from tasks import metrics
from tasks.base import get_task


def _references(data_dir: Path) -> list[str]:
    """Translation's test references as a run scores them: through loading, batching and the kind."""
    task, kind, tokenizer = get_task("translation"), kinds.get_kind("seq2seq"), load_tokenizer("tiny-bert2bert")
    table = load_split(task, "test", DataSource(data_dir=data_dir), tokenizer, kind, tokenizer.cls_token_id)
    refs: list[str] = [""] * len(table)
    for batch in Batches(kind, task, table, 128, tokenizer.pad_token_id, tokenizer.cls_token_id).iterate():
        for i, r in zip(batch["index"].tolist(), kind.references(task, batch, tokenizer)):
            refs[i] = r
    return refs


def test_bleu_against_the_raw_reference_file_equals_sacrebleu(data_dir, tmp_path):
    raw = gzip.decompress((data_dir / "multi30k" / "test_2016_flickr.en.gz").read_bytes()).decode().splitlines()
    refs = _references(data_dir)
    assert refs == raw, "the references are the file's lines, cased, untokenised, with their accents"
    # A fixed prediction file: the references lower-cased, every fifth with its last word dropped.
    preds = [" ".join(r.lower().split()[:-1]) if i % 5 == 0 else r.lower() for i, r in enumerate(raw)]
    (tmp_path / "ref.en").write_text("\n".join(raw) + "\n")
    (tmp_path / "hyp.en").write_text("\n".join(preds) + "\n")
    scores = metrics.translation_scores(preds, refs).corpus
    for flag, name in (([], "bleu"), (["-lc"], "bleu_lc")):
        done = subprocess.run([sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.en"), "-i", str(tmp_path / "hyp.en"),
                               "-m", "bleu", "-b", "-w", "4", *flag], capture_output=True, text=True, check=True)
        assert scores[name] == pytest.approx(float(done.stdout.strip()), abs=1e-4), name
    assert scores["bleu_lc"] > scores["bleu"], "cased BLEU now differs from lower-cased BLEU"


def test_calibration_by_its_definitions():
    """Two bins occupied: (0.6, right), (0.6, wrong) in bin 9; (0.95, right) in bin 14."""
    probs = np.array([[0.6, 0.4], [0.6, 0.4], [0.05, 0.95]])
    gold = np.array([0, 1, 1])
    stats = metrics.calibration_stats(probs, gold)
    assert stats["cal_bins"] == {"8": [2, 1.2, 1], "14": [1, 0.95, 1]}
    result = metrics.calibration_aggregate([stats])
    # ECE = 2/3·|0.5 − 0.6| + 1/3·|1 − 0.95|
    assert result["ece"] == pytest.approx(100 * (2 / 3 * 0.1 + 1 / 3 * 0.05))
    assert result["nll"] == pytest.approx(-(math.log(0.6) + math.log(0.4) + math.log(0.95)) / 3)
    assert result["brier"] == pytest.approx((2 * 0.4 ** 2 + (0.6 ** 2 + 0.6 ** 2) + 2 * 0.05 ** 2) / 3)
    # split across examples, the statistics aggregate to the same numbers (the bootstrap relies on it)
    parts = [metrics.calibration_stats(probs[i:i + 1], gold[i:i + 1]) for i in range(3)]
    assert metrics.calibration_aggregate(parts) == pytest.approx(result)


def test_tagging_calibration_counts_scored_tokens_only():
    task, kind = get_task("ner"), kinds.get_kind("tagging")
    logits = torch.zeros(1, 4, len(task.labels))
    batch = {"labels": torch.tensor([[-100, 0, -100, 1]]), "word_starts": [[1, 3]], "tags": [["O", "B-PER"]]}

    class Stub(torch.nn.Module):
        def forward(self, **inputs):
            return type("Out", (), {"logits": logits})()

    preds, stats = kind.evaluate_batch(task, Stub(), {**batch, "input_ids": torch.zeros(1, 4, dtype=torch.long)}, None, {})
    assert preds == [["O", "O"]] and stats[0]["cal_n"] == 2
    assert stats[0]["cal_nll"] == pytest.approx(2 * math.log(len(task.labels)))
