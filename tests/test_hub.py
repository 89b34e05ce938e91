"""The Hub path, with `datasets.load_dataset` replaced by tables of the Hub data sets' own schemas."""
from __future__ import annotations

import gzip

import datasets
import pytest

from kinds import get_kind
from harness.run.data import DataSource, canonical_rows, load_split
from harness.run.models import load_tokenizer
from tasks.base import get_task

NER_NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
HUB_TABLES = {
    ("eriktks/conll2003", None): datasets.Dataset.from_dict(
        {"id": ["0"], "tokens": [["EU", "rejects", "German", "call"]], "pos_tags": [[22, 42, 16, 21]],
         "chunk_tags": [[11, 21, 11, 12]], "ner_tags": [[3, 0, 7, 0]]},
        features=datasets.Features({"id": datasets.Value("string"),
                                    "tokens": datasets.Sequence(datasets.Value("string")),
                                    "pos_tags": datasets.Sequence(datasets.Value("int32")),
                                    "chunk_tags": datasets.Sequence(datasets.Value("int32")),
                                    "ner_tags": datasets.Sequence(datasets.ClassLabel(names=NER_NAMES))})),
    ("stanfordnlp/sst2", None): datasets.Dataset.from_dict(
        {"idx": [0, 1], "sentence": ["a gem .", "dull ."], "label": [1, 0]},
        features=datasets.Features({"idx": datasets.Value("int32"), "sentence": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["negative", "positive"])})),
    ("bentrevett/multi30k", None): datasets.Dataset.from_dict({"en": ["A dog runs."], "de": ["Ein Hund rennt."]}),
    ("wmt/wmt16", "de-en"): datasets.Dataset.from_dict(
        {"translation": [{"de": "Guten Morgen.", "en": "Good morning."}]}),
    ("knkarthick/samsum", None): datasets.Dataset.from_dict(
        {"id": ["1"], "dialogue": ["Amanda: cookies?\nJerry: sure!"], "summary": ["Amanda offers cookies."]}),
    ("EdinburghNLP/xsum", None): datasets.Dataset.from_dict(
        {"document": ["Long article."], "summary": ["Short."], "id": ["9"]}),
}


@pytest.fixture(autouse=True)
def fake_hub(monkeypatch, tmp_path):
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return HUB_TABLES[(path, name)]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return calls


@pytest.mark.parametrize("task, variant, expected", [
    ("ner", None, {"tokens": ["EU", "rejects", "German", "call"], "tags": ["B-ORG", "O", "B-MISC", "O"]}),
    ("sentiment", None, {"text": "a gem .", "label": 1}),
    ("translation", None, {"source": "Ein Hund rennt.", "target": "A dog runs."}),
    ("translation", "wmt16", {"source": "Guten Morgen.", "target": "Good morning."}),
    ("summarization", None, {"source": "Amanda: cookies?\nJerry: sure!", "target": "Amanda offers cookies."}),
    ("summarization", "xsum", {"source": "Long article.", "target": "Short."}),
])
def test_hub_rows_become_canonical_rows(task, variant, expected, fake_hub):
    rows = canonical_rows(get_task(task), "train", DataSource(hub_variant=variant))
    assert rows[0] == expected
    assert fake_hub[-1][2] == get_task(task).hub_splits["train"]


def test_hub_split_is_tokenised_and_identified_by_its_id():
    task = get_task("sentiment")
    source = DataSource()
    assert source.describe(task) == {"kind": "hub", "id": "stanfordnlp/sst2", "config": None}
    table = load_split(task, "validation", source, load_tokenizer("tiny-bert"), get_kind(task.kind), None)
    assert table["label"] == [1, 0] and table["index"] == [0, 1] and len(table["input_ids"][0]) > 2


def test_unknown_hub_variant_names_the_choices():
    with pytest.raises(KeyError, match="valid variants: wmt16"):
        DataSource(hub_variant="nope").describe(get_task("translation"))


# ---- issue 13, item 2: a variant is used with a data directory too, or refused ------------------

def test_variant_with_a_data_dir_reads_the_hub_not_the_default_files(tmp_path, data_dir, fake_hub):
    """Before: with a data directory, --hub-variant was ignored and the default files were read."""
    source = DataSource(data_dir=data_dir, hub_variant="wmt16")
    assert source.describe(get_task("translation")) == {"kind": "hub", "id": "wmt/wmt16", "config": "de-en"}
    assert canonical_rows(get_task("translation"), "train", source)[0]["source"] == "Guten Morgen."


def test_variant_reads_its_local_files_from_the_documented_layout(tmp_path, fake_hub):
    folder = tmp_path / "variants" / "wmt16" / "multi30k"
    folder.mkdir(parents=True)
    for stem in ("train", "val", "test_2016_flickr"):
        (folder / f"{stem}.de.gz").write_bytes(gzip.compress("Hallo Welt.\n".encode()))
        (folder / f"{stem}.en.gz").write_bytes(gzip.compress("Hello world.\n".encode()))
    source = DataSource(data_dir=tmp_path, hub_variant="wmt16")
    described = source.describe(get_task("translation"))
    assert described["kind"] == "local" and described["variant"] == "wmt16"
    assert canonical_rows(get_task("translation"), "test", source) == [{"source": "Hallo Welt.", "target": "Hello world."}]
    assert fake_hub == [], "the Hub is not asked"


def test_bogus_variant_is_refused_before_training_with_a_data_dir(tmp_path, data_dir, monkeypatch):
    """Before: `--hub-variant bogus` was accepted whenever a data directory was set."""
    import harness.run.recipe
    from harness.cli import main

    monkeypatch.setattr(harness.run.recipe, "run_or_record_failure", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--preset", "smoke", "--task", "translation", "--reward", "ce", "--data-dir", str(data_dir),
              "--hub-variant", "bogus", "--store", str(tmp_path / "s")])
    assert "--hub-variant 'bogus'" in str(exit_info.value.code) and "valid variants: wmt16" in str(exit_info.value.code)
    assert not (tmp_path / "s").exists()
