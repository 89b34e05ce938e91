"""Task metrics by their standard definitions, every corpus score on a 0-100 scale.

The reference libraries are called directly (seqeval, sacrebleu, rouge_score), never through
`evaluate.load`, which fetches metric scripts from the Hugging Face Hub and so fails offline.

Each metric comes as three functions:
  `*_scores(preds, refs) -> MetricResult`: corpus scores plus per-example sufficient statistics;
  `*_aggregate(per_example) -> dict`: the same corpus scores recomputed from any subset of those
      statistics (for bootstrap resampling); on all of them it equals `*_scores(...).corpus` exactly;
  `*_sentence(pred, ref) -> float`: a score in [0, 1] for one example (for RL rewards).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from rouge_score.rouge_scorer import RougeScorer
from sacrebleu.metrics import BLEU, CHRF
from seqeval.metrics.v1 import precision_recall_fscore_support
from seqeval.scheme import IOB2, Entities

from tasks.base import MetricResult


def mean_words(predictions: Sequence[Any]) -> float | None:
    """Mean length in whitespace-separated words of generated outputs; None for labels and tags,
    whose length is the input's and says nothing about the policy."""
    if not predictions or not all(isinstance(p, str) for p in predictions):
        return None
    return sum(len(p.split()) for p in predictions) / len(predictions)


def _check_aligned(preds: Sequence[Any], refs: Sequence[Any]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    # Same operation order as seqeval and sklearn, so the floats agree to the last bit.
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


# --- tagging: entity-level (seqeval, strict IOB2) -----------------------------------------------

def _entity_sets(entities: Entities) -> list[set[tuple[str, int, int]]]:
    return [{(e.tag, e.start, e.end) for e in sentence} for sentence in entities.entities]


def tagging_scores(preds: list[list[str]], refs: list[list[str]]) -> MetricResult:
    """seqeval micro precision/recall/F1 (mode="strict", scheme=IOB2), F1 per entity type
    (`f1_PER`, ...) and token accuracy. Per example: tp/n_pred/n_gold overall and per type
    (every type seen in the corpus, so any subset aggregates to the same keys), correct tokens, tokens."""
    _check_aligned(preds, refs)
    for i, (p, r) in enumerate(zip(preds, refs)):
        if len(p) != len(r):
            raise ValueError(f"example {i}: {len(p)} predicted tags for {len(r)} gold tags")
    # Strict IOB2 entities: an entity must start with B-X (an I-X after O starts none). Built once
    # and handed to seqeval too, which accepts them precomputed.
    gold_entities, pred_entities = Entities(refs, IOB2), Entities(preds, IOB2)
    gold_sets, pred_sets = _entity_sets(gold_entities), _entity_sets(pred_entities)
    types = sorted({e[0] for s in gold_sets + pred_sets for e in s})
    per_example = []
    for gold, pred, p, r in zip(gold_sets, pred_sets, preds, refs):
        stats: dict[str, Any] = {"tp": len(gold & pred), "n_pred": len(pred), "n_gold": len(gold),
                                 "correct_tokens": sum(a == b for a, b in zip(p, r)), "n_tokens": len(r)}
        for t in types:
            stats[f"tp_{t}"] = sum(e[0] == t for e in gold & pred)
            stats[f"n_pred_{t}"] = sum(e[0] == t for e in pred)
            stats[f"n_gold_{t}"] = sum(e[0] == t for e in gold)
        per_example.append(stats)

    kwargs = dict(scheme=IOB2, zero_division=0, entities_true=gold_entities, entities_pred=pred_entities)
    precision, recall, f1, _ = precision_recall_fscore_support(refs, preds, average="micro", **kwargs)
    corpus = {"precision": 100 * float(precision), "recall": 100 * float(recall), "f1": 100 * float(f1),
              "token_accuracy": 100 * _ratio(sum(s["correct_tokens"] for s in per_example),
                                             sum(s["n_tokens"] for s in per_example))}
    if types:
        _, _, f1_by_type, _ = precision_recall_fscore_support(refs, preds, average=None, **kwargs)
        corpus.update({f"f1_{t}": 100 * float(v) for t, v in zip(types, f1_by_type)})
    return MetricResult(corpus=corpus, per_example=per_example)


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision, recall = _ratio(tp, n_pred), _ratio(tp, n_gold)
    return precision, recall, _f1(precision, recall)


def tagging_aggregate(per_example: list[dict[str, Any]]) -> dict[str, float]:
    def total(key: str) -> int:
        return sum(s[key] for s in per_example)

    precision, recall, f1 = _prf(total("tp"), total("n_pred"), total("n_gold"))
    corpus = {"precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1,
              "token_accuracy": 100 * _ratio(total("correct_tokens"), total("n_tokens"))}
    types = sorted(k[3:] for k in (per_example[0] if per_example else {}) if k.startswith("tp_"))
    for t in types:
        corpus[f"f1_{t}"] = 100 * _prf(total(f"tp_{t}"), total(f"n_pred_{t}"), total(f"n_gold_{t}"))[2]
    return corpus | calibration_aggregate(per_example)


def tagging_sentence(pred: list[str], ref: list[str]) -> float:
    """Strict entity F1 of one sentence; 1.0 when neither has an entity."""
    gold, predicted = _entity_sets(Entities([ref, pred], IOB2))
    if not gold and not predicted:
        return 1.0
    return _prf(len(gold & predicted), len(predicted), len(gold))[2]


# --- classification -----------------------------------------------------------------------------

def classification_scores(preds: list[int], refs: list[int]) -> MetricResult:
    """Accuracy and macro F1 (unweighted mean over every class that occurs as gold or prediction,
    as sklearn's `f1_score(average="macro")`); per example the predicted and gold label."""
    _check_aligned(preds, refs)
    per_example = [{"pred": int(p), "gold": int(g)} for p, g in zip(preds, refs)]
    return MetricResult(corpus=classification_aggregate(per_example), per_example=per_example)


def classification_aggregate(per_example: list[dict[str, Any]]) -> dict[str, float]:
    classes = sorted({s["pred"] for s in per_example} | {s["gold"] for s in per_example})
    f1s = []
    for c in classes:
        tp = sum(s["pred"] == c and s["gold"] == c for s in per_example)
        f1s.append(_prf(tp, sum(s["pred"] == c for s in per_example),
                        sum(s["gold"] == c for s in per_example))[2])
    return {"accuracy": 100 * _ratio(sum(s["pred"] == s["gold"] for s in per_example), len(per_example)),
            "macro_f1": 100 * _ratio(sum(f1s), len(f1s))} | calibration_aggregate(per_example)


def classification_sentence(pred: int, ref: int) -> float:
    """1 for the gold label, else 0: accuracy at sentence level."""
    return 1.0 if int(pred) == int(ref) else 0.0


# --- calibration (classification and tagging) --------------------------------------------------
# Label smoothing, the confidence penalty, focal loss and the entropy terms are claimed to improve
# calibration: these are the standard measures, over every scored prediction (a label, or a word's
# tag), with per-example sufficient statistics so that the bootstrap resamples them like any metric.

CALIBRATION_BINS = 15  # equal-width confidence bins, as in Guo et al. 2017


def calibration_stats(probs: Any, gold: Any) -> dict[str, Any]:
    """Sufficient statistics of one example's scored predictions: `probs` [M, C] (rows sum to 1),
    `gold` [M] class ids. The top-class confidence c falls in bin ⌈c·15⌉ (bins (k−1)/15 < c ≤ k/15);
    per occupied bin: [predictions, summed confidence, correct predictions]."""
    import numpy as np

    probs, gold = np.asarray(probs, dtype=np.float64), np.asarray(gold, dtype=np.int64)
    confidence, predicted = probs.max(-1), probs.argmax(-1)
    gold_p = probs[np.arange(len(gold)), gold]
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(gold)), gold] = 1.0
    bins: dict[str, list[float]] = {}
    for c, right in zip(confidence, predicted == gold):
        k = str(min(max(int(np.ceil(c * CALIBRATION_BINS)) - 1, 0), CALIBRATION_BINS - 1))
        n, total, correct = bins.get(k, [0, 0.0, 0])
        bins[k] = [n + 1, total + float(c), correct + int(right)]
    return {"cal_n": int(len(gold)), "cal_nll": float(-np.log(np.clip(gold_p, 1e-300, None)).sum()),
            "cal_brier": float(((probs - onehot) ** 2).sum()), "cal_bins": bins}


def calibration_aggregate(per_example: list[dict[str, Any]]) -> dict[str, float]:
    """Expected calibration error (Guo et al. 2017: Σ_k |B_k|/n · |acc(B_k) − conf(B_k)|, 15 equal-width
    bins) ×100, mean negative log-likelihood of the gold class (nats) and mean Brier score
    (Σ_c (p_c − y_c)², in [0, 2]) per scored prediction; none where the examples carry no statistics
    (records written before they existed)."""
    rows = [s for s in per_example if "cal_n" in s]
    if not rows or len(rows) != len(per_example):
        return {}
    n = sum(s["cal_n"] for s in rows)
    bins = [[0, 0.0, 0] for _ in range(CALIBRATION_BINS)]
    for s in rows:
        for k, (count, confidence, correct) in s["cal_bins"].items():
            bins[int(k)][0] += count
            bins[int(k)][1] += confidence
            bins[int(k)][2] += correct
    ece = sum(abs(correct - confidence) for _, confidence, correct in bins) / n if n else 0.0
    return {"ece": 100 * ece, "nll": _ratio(sum(s["cal_nll"] for s in rows), n),
            "brier": _ratio(sum(s["cal_brier"] for s in rows), n)}


# --- translation (sacreBLEU) --------------------------------------------------------------------
# sacreBLEU's own bootstrap uses `_extract_corpus_statistics` / `_compute_score_from_stats`; they
# are the only way to get chrF statistics, and they make the aggregate identical to corpus_score.

_BLEU_VARIANTS = {"bleu": {}, "bleu_lc": {"lowercase": True}}


def _bleu_stats(stats: list[int]) -> dict[str, Any]:
    """sacreBLEU's flat [sys_len, ref_len, counts x4, totals x4] as named fields."""
    return {"sys_len": int(stats[0]), "ref_len": int(stats[1]),
            "counts": [int(x) for x in stats[2:6]], "totals": [int(x) for x in stats[6:10]]}


def translation_scores(preds: list[str], refs: list[str]) -> MetricResult:
    """Corpus BLEU (cased, tokenize 13a), BLEU lower-cased and chrF, with their signatures in `info`.
    Per example: BLEU sufficient statistics under `bleu` and `bleu_lc`, chrF statistics under `chrf`."""
    _check_aligned(preds, refs)
    corpus, info = {}, {}
    per_example: list[dict[str, Any]] = [{} for _ in preds]
    metrics = {name: BLEU(**kw) for name, kw in _BLEU_VARIANTS.items()} | {"chrf": CHRF()}
    for name, metric in metrics.items():
        corpus[name] = metric.corpus_score(preds, [refs]).score
        info[name] = metric.get_signature().format()
        for row, stats in zip(per_example, metric._extract_corpus_statistics(preds, [refs])):
            row[name] = _bleu_stats(stats) if name != "chrf" else [int(x) for x in stats]
    return MetricResult(corpus=corpus, per_example=per_example, info=info)


def translation_aggregate(per_example: list[dict[str, Any]]) -> dict[str, float]:
    corpus = {}
    for name in _BLEU_VARIANTS:
        rows = [s[name] for s in per_example]
        corpus[name] = BLEU.compute_bleu(
            correct=[sum(r["counts"][n] for r in rows) for n in range(4)],
            total=[sum(r["totals"][n] for r in rows) for n in range(4)],
            sys_len=sum(r["sys_len"] for r in rows), ref_len=sum(r["ref_len"] for r in rows),
            smooth_method="exp").score
    chrf_stats = [sum(col) for col in zip(*(s["chrf"] for s in per_example))]
    corpus["chrf"] = CHRF()._compute_score_from_stats(chrf_stats).score if chrf_stats else 0.0
    return corpus


@lru_cache(maxsize=1)
def _sentence_bleu() -> BLEU:
    return BLEU(lowercase=True, effective_order=True)


def translation_sentence(pred: str, ref: str) -> float:
    """Lower-cased sentence BLEU (sacreBLEU's sentence defaults: exp smoothing, effective order) / 100,
    clipped to 1 (a perfect match comes out a rounding error above 100)."""
    return min(1.0, _sentence_bleu().sentence_score(pred, [ref]).score / 100)


# --- summarization (rouge_score) ----------------------------------------------------------------

_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@lru_cache(maxsize=1)
def _rouge() -> RougeScorer:
    # rougeLsum splits on newlines itself: texts are passed with their newlines intact.
    return RougeScorer(list(_ROUGE_TYPES), use_stemmer=True)


def summarization_scores(preds: list[str], refs: list[str]) -> MetricResult:
    """Mean ROUGE-1/2/L/Lsum F-measure x 100 (Porter stemming) and `mean_length`, the mean number
    of whitespace-separated words in the predictions. Per example: each F-measure and the length."""
    _check_aligned(preds, refs)
    per_example = []
    for pred, ref in zip(preds, refs):
        scores = _rouge().score(ref, pred)  # rouge_score takes (target, prediction)
        row: dict[str, Any] = {t: float(scores[t].fmeasure) for t in _ROUGE_TYPES}
        row["length"] = len(pred.split())
        per_example.append(row)
    return MetricResult(corpus=summarization_aggregate(per_example), per_example=per_example)


def summarization_aggregate(per_example: list[dict[str, Any]]) -> dict[str, float]:
    n = len(per_example)
    corpus = {t: 100 * _ratio(sum(s[t] for s in per_example), n) for t in _ROUGE_TYPES}
    corpus["mean_length"] = _ratio(sum(s["length"] for s in per_example), n)
    return corpus


def summarization_sentence(pred: str, ref: str) -> float:
    """ROUGE-1 F-measure (stemmed) of one summary, in [0, 1]: the main metric at sentence level."""
    return float(_rouge().score(ref, pred)["rouge1"].fmeasure)
