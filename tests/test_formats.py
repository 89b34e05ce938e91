import gzip
import warnings

import pytest

from tasks.formats import DataFormatError, read_conll, read_csv_pairs, read_label_tsv, read_parallel
from tasks.ner import LABELS


def write(path, text, compress=False):
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def check(excinfo, path, line, *fragments):
    """The error locates `path` and `line`, says how to fix it, and mentions every fragment."""
    err, message = excinfo.value, str(excinfo.value)
    assert err.path == path and str(path) in message
    assert err.line == line
    if line is not None:
        assert f"line {line}:" in message
    assert "Fix:" in message
    for fragment in fragments:
        assert fragment in message, message


# --- the real files -----------------------------------------------------------------------------

def test_conll_valid(data_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped files are IOB2: no conversion warning
        rows = read_conll(data_dir / "conll2003" / "valid.txt.gz", LABELS)
    assert len(rows) == 3250
    assert sum(len(r["tokens"]) for r in rows) == 51362
    assert rows[0]["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert rows[0]["tags"][:3] == ["O", "O", "B-ORG"]
    assert all(len(r["tokens"]) == len(r["tags"]) for r in rows)


def test_sst2_dev(data_dir):
    rows = read_label_tsv(data_dir / "sst2" / "dev.tsv")
    assert len(rows) == 872
    assert {r["label"] for r in rows} == {0, 1}
    assert rows[0] == {"text": "one long string of cliches .", "label": 0}


def test_multi30k_val(data_dir):
    rows = read_parallel(data_dir / "multi30k" / "val.de.gz", data_dir / "multi30k" / "val.en.gz")
    assert len(rows) == 1014
    assert rows[0] == {"source": "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
                       "target": "A group of men are loading cotton onto a truck"}


def test_samsum_validation(data_dir):
    rows = read_csv_pairs(data_dir / "samsum" / "validation.csv.gz", "dialogue", "summary")
    assert len(rows) == 818
    assert rows[0]["source"].startswith("A: Hi Tom, are you busy")
    assert "\n" in rows[0]["source"]  # multi-line quoted fields survive
    assert rows[0]["target"].startswith("A will go to the animal shelter")


# --- CoNLL --------------------------------------------------------------------------------------

def test_conll_gzip_docstart_and_extra_columns(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter B-PER\nBlackburn I-PER\n"
    rows = read_conll(write(tmp_path / "a.txt.gz", text, compress=True), LABELS)
    assert rows == [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
                    {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}]


def test_conll_one_column(tmp_path):
    path = write(tmp_path / "train.txt", "-DOCSTART- -X- -X- O\n\nGerman JJ B-NP B-MISC\nEU\n")
    with pytest.raises(DataFormatError) as e:
        read_conll(path, LABELS)
    check(e, path, 4, "at least 2", "found 1", "'EU'")


def test_conll_unknown_tag(tmp_path):
    path = write(tmp_path / "train.txt", "EU NNP B-NP B-ORG\nBonn NNP B-NP B-GPE\n")
    with pytest.raises(DataFormatError) as e:
        read_conll(path, LABELS)
    check(e, path, 2, "'B-GPE'", "B-PER, I-PER")


def test_conll_iob1_is_converted_to_iob2(tmp_path):
    # IOB1: entities start with I-; B- only separates two adjacent entities of one type.
    text = ("U.N. I-ORG\nofficial O\nEkeus I-PER\nheads O\nfor O\nBaghdad I-LOC\n\n"
            "Peter I-PER\nMary B-PER\nSmith I-PER\nin O\nNew I-LOC\nYork I-LOC\n")
    path = write(tmp_path / "iob1.txt", text)
    with pytest.warns(UserWarning, match="IOB1") as record:
        rows = read_conll(path, LABELS)
    assert len(record) == 1 and str(path) in str(record[0].message)
    assert rows[0]["tags"] == ["B-ORG", "O", "B-PER", "O", "O", "B-LOC"]
    assert rows[1]["tags"] == ["B-PER", "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]


def test_conll_only_docstart(tmp_path):
    path = write(tmp_path / "x.txt", "-DOCSTART- -X- -X- O\n\n")
    with pytest.raises(DataFormatError) as e:
        read_conll(path, LABELS)
    check(e, path, None, "no sentences")


# --- TSV ----------------------------------------------------------------------------------------

def test_tsv_without_tab(tmp_path):
    path = write(tmp_path / "dev.tsv", "1\tgood film .\n0 a dull film .\n")
    with pytest.raises(DataFormatError) as e:
        read_label_tsv(path)
    check(e, path, 2, "no tab", "LABEL<TAB>SENTENCE")


def test_tsv_label_out_of_range(tmp_path):
    path = write(tmp_path / "dev.tsv", "1\tgood film .\n\n2\ta dull film .\n")
    with pytest.raises(DataFormatError) as e:
        read_label_tsv(path)
    check(e, path, 3, "'2'", "[0, 2)")


def test_tsv_glue_header_is_rejected(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\ngood film .\t1\n")
    with pytest.raises(DataFormatError) as e:
        read_label_tsv(path)
    check(e, path, 1, "'sentence'", "swap the columns")


# --- parallel -----------------------------------------------------------------------------------

def test_parallel_misaligned(tmp_path):
    de = write(tmp_path / "val.de.gz", "Ein Hund.\nZwei Katzen.\nDrei Vögel.\n", compress=True)
    en = write(tmp_path / "val.en", "A dog.\nTwo cats.\n")
    with pytest.raises(DataFormatError) as e:
        read_parallel(de, en)
    check(e, en, 3, str(de), "has 3 lines", "has 2", f"line 3 of {de} has no partner")


def test_parallel_only_splits_on_newline(tmp_path):
    de = write(tmp_path / "a.de", "eins\u2028zwei\ndrei\n")
    en = write(tmp_path / "a.en", "one two\r\nthree")
    assert read_parallel(de, en) == [{"source": "eins\u2028zwei", "target": "one two"},
                                     {"source": "drei", "target": "three"}]


# --- CSV ----------------------------------------------------------------------------------------

def test_csv_without_header(tmp_path):
    path = write(tmp_path / "val.csv", '1,"A: hi\nB: hello",They greet.\n')
    with pytest.raises(DataFormatError) as e:
        read_csv_pairs(path, "dialogue", "summary")
    check(e, path, 1, "'dialogue' and 'summary'", "id,dialogue,summary")


def test_csv_reports_the_line_a_record_starts_on(tmp_path):
    text = 'id,dialogue,summary\n1,"A: hi\nB: hello\nA: bye",They greet.\n2,"A: x\nB: y",s,extra\n'
    path = write(tmp_path / "val.csv.gz", text, compress=True)
    with pytest.raises(DataFormatError) as e:
        read_csv_pairs(path, "dialogue", "summary")
    check(e, path, 5, "expected 3 fields", "found 4")


def test_csv_drops_empty_sources_with_one_warning(tmp_path):
    path = write(tmp_path / "train.csv", 'id,dialogue,summary\n1,"A: hi\nB: yo",Greeting.\n2,,Nothing.\n3," ",x\n')
    with pytest.warns(UserWarning, match="dropped 2 row") as record:
        rows = read_csv_pairs(path, "dialogue", "summary")
    assert len(record) == 1
    assert rows == [{"source": "A: hi\nB: yo", "target": "Greeting."}]


# --- errors common to every reader --------------------------------------------------------------

@pytest.mark.parametrize("read", [
    lambda p: read_conll(p, LABELS), read_label_tsv,
    lambda p: read_parallel(p, p), lambda p: read_csv_pairs(p, "dialogue", "summary")])
def test_empty_file(tmp_path, read):
    path = write(tmp_path / "empty.txt.gz", "", compress=True)
    with pytest.raises(DataFormatError) as e:
        read(path)
    check(e, path, None, "empty")


def test_non_utf8_bytes(tmp_path):
    path = write(tmp_path / "dev.tsv", "1\tgood .\n0\tgood .\n1\tcaf".encode() + b"\xe9 cr\xe8me .\n")
    with pytest.raises(DataFormatError) as e:
        read_label_tsv(path)
    check(e, path, 3, "0xe9", "column 6", "UTF-8", "iconv")


def test_missing_file(tmp_path):
    path = tmp_path / "conll2003" / "valid.txt.gz"
    with pytest.raises(DataFormatError) as e:
        read_conll(path, LABELS)
    check(e, path, None, "not found", "HARNESS_DATA_DIR", "conll2003/, sst2/, multi30k/")


def test_error_is_a_value_error(tmp_path):
    assert issubclass(DataFormatError, ValueError)


# --- issue 13, item 5: bad rows that used to be accepted silently ---------------------------------

def test_tsv_extra_columns(tmp_path):
    """Before: 'LABEL<TAB>SENTENCE<TAB>EXTRA' kept the extra column as part of the sentence."""
    path = write(tmp_path / "train.tsv", "1\ta gem .\n0\tdull .\tsource=imdb\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_label_tsv(path)
    check(excinfo, path, 2, "expected 2 tab-separated columns, found 3")


@pytest.mark.parametrize("side", ["source", "target"])
def test_parallel_empty_line_is_refused(tmp_path, side):
    """Before: an empty sentence (or an inserted blank line, which shifts every later pair while the
    counts still match after a deletion elsewhere) was read as a pair."""
    good = "Ein Hund.\nZwei Katzen.\nDrei Vögel.\n"
    bad = "Ein Hund.\n\nDrei Vögel.\n"
    src = write(tmp_path / "a.de", bad if side == "source" else good)
    tgt = write(tmp_path / "a.en", good if side == "source" else bad)
    with pytest.raises(DataFormatError) as excinfo:
        read_parallel(src, tgt)
    check(excinfo, src if side == "source" else tgt, 2, "empty line", "shifts every later line")


def test_parallel_trailing_blank_lines_are_accepted(tmp_path):
    src = write(tmp_path / "a.de", "Ein Hund.\nZwei Katzen.\n\n")
    tgt = write(tmp_path / "a.en", "A dog.\nTwo cats.\n")
    assert read_parallel(src, tgt) == [{"source": "Ein Hund.", "target": "A dog."},
                                       {"source": "Zwei Katzen.", "target": "Two cats."}]


def test_csv_empty_summary_is_refused(tmp_path):
    """Before: an empty summary became a training target of nothing. The real SAMSum has none."""
    path = write(tmp_path / "s.csv", 'id,dialogue,summary\n1,"A: hi\nB: hey",greeting\n2,"A: bye",\n')
    with pytest.raises(DataFormatError) as excinfo:
        read_csv_pairs(path, "dialogue", "summary")
    check(excinfo, path, 4, "empty 'summary'")


def test_real_samsum_has_no_empty_summaries(data_dir):
    for split in ("train", "validation", "test"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # train: the one empty dialogue, dropped with a warning
            rows = read_csv_pairs(data_dir / "samsum" / f"{split}.csv.gz", "dialogue", "summary")
        assert all(r["target"].strip() for r in rows)


def test_data_error_survives_pickling(tmp_path):
    """It travels from --jobs workers and Ray tasks; before, unpickling it raised a TypeError
    (Ray: UnserializableException)."""
    import pickle

    err = DataFormatError(tmp_path / "x.tsv", 3, "bad", "fix it")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is DataFormatError and str(back) == str(err) and (back.path, back.line) == (err.path, 3)
