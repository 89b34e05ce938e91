"""Multi30k German-to-English caption translation (Elliott et al., 2016), task 1."""
from typing import Any

from tasks import metrics
from tasks.base import Generation, Task, register_task
from tasks.formats import read_parallel


def _from_hub(row: dict[str, Any], features: Any) -> dict[str, Any]:
    pair = row.get("translation", row)  # WMT16 nests {"de", "en"} under "translation"
    return {"source": pair["de"], "target": pair["en"]}


register_task(Task(
    name="translation",
    kind="seq2seq",
    description="Multi30k de->en image-caption translation; BLEU (sacreBLEU), lower-cased as main metric",
    local_files={"train": ("multi30k/train.de.gz", "multi30k/train.en.gz"),
                 "validation": ("multi30k/val.de.gz", "multi30k/val.en.gz"),
                 "test": ("multi30k/test_2016_flickr.de.gz", "multi30k/test_2016_flickr.en.gz")},
    read_local=read_parallel,
    hub_id="bentrevett/multi30k",
    hub_config=None,
    hub_splits={"train": "train", "validation": "validation", "test": "test"},
    from_hub=_from_hub,
    score=metrics.translation_scores,
    aggregate=metrics.translation_aggregate,
    sentence_score=metrics.translation_sentence,
    # The offline model (MiniLM) has an uncased vocabulary and cannot produce capitals, so cased
    # BLEU would mostly measure casing; cased BLEU is still reported.
    main_metric="bleu_lc",
    default_model="minilm2minilm",
    generation=Generation(num_beams=4, max_new_tokens=64, length_penalty=1.0),
    max_source_length=64,
    prompt="Translate German to English.\nGerman: {source}\nEnglish:",
    max_target_length=64,
    hub_alternatives={"wmt16": ("wmt/wmt16", "de-en")},
))
