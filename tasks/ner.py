"""CoNLL-2003 English named-entity recognition (Tjong Kim Sang and De Meulder, 2003)."""
from functools import partial
from typing import Any

from tasks import metrics
from tasks.base import Task, register_task
from tasks.formats import read_conll

# The order of the Hub's `ner_tags` ClassLabel (eriktks/conll2003), so label ids agree on both paths.
LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


def _from_hub(row: dict[str, Any], features: Any) -> dict[str, Any]:
    names = features["ner_tags"].feature.names
    return {"tokens": list(row["tokens"]), "tags": [names[i] for i in row["ner_tags"]]}


register_task(Task(
    name="ner",
    kind="tagging",
    description="CoNLL-2003 English NER: PER, ORG, LOC, MISC in IOB2; entity-level F1 (seqeval, strict)",
    local_files={"train": ("conll2003/train.txt.gz",), "validation": ("conll2003/valid.txt.gz",),
                 "test": ("conll2003/test.txt.gz",)},
    read_local=partial(read_conll, labels=LABELS),
    hub_id="eriktks/conll2003",
    hub_config=None,
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    from_hub=_from_hub,
    score=metrics.tagging_scores,
    aggregate=metrics.tagging_aggregate,
    sentence_score=metrics.tagging_sentence,
    main_metric="f1",
    default_model="minilm",
    labels=LABELS,
    max_source_length=128,
))
