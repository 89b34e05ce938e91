"""SAMSum dialogue summarisation (Gliwa et al., 2019); XSum and CNN/DailyMail as Hub alternatives."""
from functools import partial
from typing import Any

from tasks import metrics
from tasks.base import Generation, Task, register_task
from tasks.formats import first_field, read_csv_pairs


def _from_hub(row: dict[str, Any], features: Any) -> dict[str, Any]:
    return {"source": first_field(row, "dialogue", "document", "article"),
            "target": first_field(row, "summary", "highlights")}


register_task(Task(
    name="summarization",
    kind="seq2seq",
    description="SAMSum messenger-dialogue summarisation; ROUGE F-measure (rouge_score, stemmed)",
    local_files={"train": ("samsum/train.csv.gz",), "validation": ("samsum/validation.csv.gz",),
                 "test": ("samsum/test.csv.gz",)},
    read_local=partial(read_csv_pairs, source_column="dialogue", target_column="summary"),
    hub_id="knkarthick/samsum",
    hub_config=None,
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    from_hub=_from_hub,
    score=metrics.summarization_scores,
    aggregate=metrics.summarization_aggregate,
    sentence_score=metrics.summarization_sentence,
    main_metric="rouge1",
    default_model="minilm2minilm",
    generation=Generation(num_beams=4, max_new_tokens=64, length_penalty=1.0, no_repeat_ngram_size=3),
    max_source_length=256,
    max_target_length=64,
    prompt="Summarize the dialogue.\n{source}\nSummary:",
    hub_alternatives={"xsum": ("EdinburghNLP/xsum", None), "cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0")},
))
