import math
import random

import pytest
import sacrebleu
from seqeval.metrics import classification_report, f1_score
from seqeval.scheme import IOB2
from sklearn.metrics import f1_score as sk_f1

from tasks import metrics as m
from tasks.formats import read_conll, read_csv_pairs, read_parallel
from tasks.ner import LABELS

# --- tagging ------------------------------------------------------------------------------------

NER_GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC", "I-MISC"]]
NER_PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-MISC", "O"]]


def test_tagging_by_hand():
    # Gold: PER[0,2) LOC[3,4) | ORG[0,1) MISC[2,4).  Pred: PER[0,2) ORG[3,4) | ORG[0,1) MISC[2,3).
    # Correct: PER and the second-sentence ORG -> tp=2 of 4 predicted and 4 gold.
    result = m.tagging_scores(NER_PRED, NER_GOLD)
    c = result.corpus
    assert c["precision"] == c["recall"] == c["f1"] == 50.0
    assert c["f1_PER"] == 100.0
    assert c["f1_LOC"] == 0.0 and c["f1_MISC"] == 0.0
    assert c["f1_ORG"] == pytest.approx(100 * 2 * 0.5 * 1.0 / 1.5)  # P = 1/2, R = 1/1
    assert c["token_accuracy"] == 75.0  # 6 of 8 tags
    assert result.per_example[0]["tp"] == 1 and result.per_example[0]["n_pred_ORG"] == 1
    assert c["f1"] == 100 * f1_score(NER_GOLD, NER_PRED, mode="strict", scheme=IOB2)
    assert m.tagging_aggregate(result.per_example) == c


def test_tagging_strict_differs_from_conlleval():
    # An entity that starts with I-PER is an entity for conlleval but not under strict IOB2.
    gold, pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert f1_score(gold, pred) == 1.0
    assert f1_score(gold, pred, mode="strict", scheme=IOB2) == 0.0
    assert m.tagging_scores(pred, gold).corpus["f1"] == 0.0
    assert m.tagging_sentence(pred[0], gold[0]) == 0.0


def test_tagging_sentence():
    assert m.tagging_sentence(["O", "O"], ["O", "O"]) == 1.0
    assert m.tagging_sentence(["B-PER", "O"], ["O", "O"]) == 0.0
    assert m.tagging_sentence(NER_PRED[0], NER_GOLD[0]) == 0.5  # 1 of 2 each way
    with pytest.raises(ValueError):
        m.tagging_scores([["O"]], [["O", "O"]])


def test_tagging_matches_seqeval_on_real_data(data_dir):
    gold = [r["tags"] for r in read_conll(data_dir / "conll2003" / "valid.txt.gz", LABELS)]
    rng = random.Random(0)
    pred = [[rng.choice(LABELS) if rng.random() < 0.05 else t for t in tags] for tags in gold]
    result = m.tagging_scores(pred, gold)
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    assert result.corpus["f1"] == 100 * f1_score(gold, pred, mode="strict", scheme=IOB2)
    for t in ("PER", "ORG", "LOC", "MISC"):
        assert result.corpus[f"f1_{t}"] == pytest.approx(100 * report[t]["f1-score"], abs=1e-12)
    assert m.tagging_aggregate(result.per_example) == result.corpus
    subset = list(range(0, len(gold), 3))
    assert m.tagging_aggregate([result.per_example[i] for i in subset]) == pytest.approx(
        m.tagging_scores([pred[i] for i in subset], [gold[i] for i in subset]).corpus, abs=1e-9)


# --- classification -----------------------------------------------------------------------------

def test_classification_by_hand():
    preds, refs = [1, 0, 1, 1], [1, 0, 0, 1]
    result = m.classification_scores(preds, refs)
    # class 0: P=1/1 R=1/2 F=2/3; class 1: P=2/3 R=2/2 F=4/5; macro = (2/3 + 4/5) / 2
    assert result.corpus["accuracy"] == 75.0
    assert result.corpus["macro_f1"] == pytest.approx(100 * (2 / 3 + 4 / 5) / 2)
    assert result.corpus["macro_f1"] == pytest.approx(100 * sk_f1(refs, preds, average="macro"))
    assert m.classification_aggregate(result.per_example) == result.corpus
    assert m.classification_sentence(1, 1) == 1.0 and m.classification_sentence(0, 1) == 0.0


# --- translation --------------------------------------------------------------------------------

def test_bleu_by_hand():
    hyps = ["the cat sat on the mat", "a dog runs in the park today"]
    refs = ["the cat is on the mat", "a dog runs in the big park"]
    # n-gram matches / totals: sentence 1: 5/6 3/5 1/4 0/3; sentence 2: 6/7 4/6 3/5 2/4.
    # Corpus: 11/13 7/11 4/9 2/7; 13 words each side, so no brevity penalty.
    expected = 100 * (11 / 13 * 7 / 11 * 4 / 9 * 2 / 7) ** 0.25
    result = m.translation_scores(hyps, refs)
    assert result.per_example[0]["bleu"] == {"sys_len": 6, "ref_len": 6, "counts": [5, 3, 1, 0],
                                             "totals": [6, 5, 4, 3]}
    assert result.corpus["bleu"] == pytest.approx(expected, rel=1e-12)
    assert result.corpus["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert result.corpus["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert "case:mixed" in result.info["bleu"] and "tok:13a" in result.info["bleu"]
    assert "case:lc" in result.info["bleu_lc"] and "nc:6" in result.info["chrf"]


def test_bleu_brevity_penalty_and_case():
    hyps, refs = ["The Cat sat on"], ["the cat sat on the mat"]
    result = m.translation_scores(hyps, refs)
    # Lower-cased, every n-gram matches (4/4 3/3 2/2 1/1); 4 words for 6: BP = exp(1 - 6/4).
    assert result.corpus["bleu_lc"] == pytest.approx(100 * math.exp(1 - 6 / 4))
    assert result.corpus["bleu"] < result.corpus["bleu_lc"]


def test_translation_aggregate_on_real_data(data_dir):
    rows = read_parallel(data_dir / "multi30k" / "val.de.gz", data_dir / "multi30k" / "val.en.gz")[:300]
    refs = [r["target"] for r in rows]
    hyps = [r.lower() if i % 3 == 0 else " ".join(r.split()[:-2]) for i, r in enumerate(refs)]
    result = m.translation_scores(hyps, refs)
    assert m.translation_aggregate(result.per_example) == result.corpus
    assert result.corpus["bleu_lc"] == sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score
    subset = list(range(0, len(refs), 4))
    sub = m.translation_scores([hyps[i] for i in subset], [refs[i] for i in subset])
    assert m.translation_aggregate([result.per_example[i] for i in subset]) == sub.corpus


def test_translation_sentence():
    assert m.translation_sentence("A dog runs.", "a dog runs.") == 1.0
    expected = sacrebleu.sentence_bleu("the cat sat", ["The cat sat on the mat"], lowercase=True).score / 100
    assert m.translation_sentence("the cat sat", "The cat sat on the mat") == pytest.approx(expected)
    assert m.translation_sentence("", "a dog") == 0.0


# --- summarization ------------------------------------------------------------------------------

def test_rouge_with_stemming():
    # Stemmed: "the cat are run" vs "the cat run" (rouge_score stems words longer than 3 letters).
    result = m.summarization_scores(["The cats are running"], ["the cat runs"])
    assert result.corpus["rouge1"] == pytest.approx(100 * 6 / 7)  # P = 3/4, R = 3/3
    assert result.corpus["rouge2"] == pytest.approx(100 * 0.4)  # "the cat": P = 1/3, R = 1/2
    assert result.corpus["rougeL"] == pytest.approx(100 * 6 / 7)
    assert result.corpus["mean_length"] == 4
    assert m.summarization_sentence("The cats are running", "the cat runs") == pytest.approx(6 / 7)


def test_rouge_lsum_uses_newlines():
    pred, ref = "the dog ran\nthe cat sat", "the cat sat\nthe dog ran"
    corpus = m.summarization_scores([pred], [ref]).corpus
    assert corpus["rougeLsum"] == pytest.approx(100.0)
    assert corpus["rougeL"] == pytest.approx(50.0)  # one LCS of 3 tokens out of 6


def test_rouge_empty_prediction():
    result = m.summarization_scores(["", "the cat"], ["a summary", "the cat"])
    assert result.corpus["rouge1"] == pytest.approx(50.0)
    assert result.per_example[0] == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0, "rougeLsum": 0.0, "length": 0}
    assert m.summarization_sentence("", "a summary") == 0.0


def test_summarization_aggregate_on_real_data(data_dir):
    rows = read_csv_pairs(data_dir / "samsum" / "validation.csv.gz", "dialogue", "summary")[:100]
    refs = [r["target"] for r in rows]
    preds = [" ".join(r["source"].split()[:20]) for r in rows]
    result = m.summarization_scores(preds, refs)
    assert m.summarization_aggregate(result.per_example) == result.corpus
    assert 0 < result.corpus["rouge1"] < 100
    assert result.corpus["mean_length"] == pytest.approx(sum(len(p.split()) for p in preds) / len(preds))
