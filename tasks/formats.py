"""Readers for the local copies of the benchmark data sets, returning canonical rows (`tasks.base`).

The Hub is not always reachable, so every task can also read its data from plain files. A broken
file must fail loudly and usefully: every problem raises `DataFormatError`, whose message names the
file, the line, what was found, what was expected and how to fix it. Gzipped files (detected by
their magic bytes, whatever their name) are read transparently.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable

DATA_DIR_FIX = (
    "point --data-dir (or the HARNESS_DATA_DIR environment variable) at the folder holding "
    "conll2003/, sst2/, multi30k/ and samsum/"
)


class DataFormatError(ValueError):
    """A data file is missing or malformed; `path` and `line` (1-based, or None) locate it."""

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str) -> None:
        self.path = Path(path)
        self.line = line
        self.problem, self.fix = problem, fix
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}. Fix: {fix}.")

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from its four parts: it travels from `--jobs` workers and Ray tasks to the grid."""
        return type(self), (self.path, self.line, self.problem, self.fix)


def _read_text(path: str | Path) -> str:
    """The whole file as text: gunzipped if needed, strictly UTF-8 (a leading BOM is dropped)."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, None, "file not found", DATA_DIR_FIX)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(path, None, f"not a valid gzip file ({e})",
                                  "re-download the file or gunzip it and read it uncompressed")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataFormatError(
            path, line, f"byte 0x{data[e.start]:02x} at column {column} is not valid UTF-8",
            f"re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name}`")
    if not text.strip():
        raise DataFormatError(path, None, "file is empty",
                              f"restore the file's content ({DATA_DIR_FIX})")
    return text


def _read_lines(path: str | Path) -> list[str]:
    """Lines split on '\\n' only (not `str.splitlines`, which also splits on U+2028 and friends
    and would silently misalign parallel files); a final newline does not add an empty line."""
    lines = [line.rstrip("\r") for line in _read_text(path).split("\n")]
    if lines[-1] == "":
        lines.pop()
    return lines


def _iob1_to_iob2(tags: list[str]) -> list[str]:
    """In IOB1 an I-X starts an entity unless it follows an X tag; in IOB2 every entity starts B-X."""
    out = []
    for i, tag in enumerate(tags):
        prev = tags[i - 1] if i else "O"
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def read_conll(path: str | Path, labels: Iterable[str]) -> list[dict[str, Any]]:
    """Read CoNLL-format tagging data: one token a line (`TOKEN POS CHUNK NER`; any line with at
    least 2 whitespace-separated columns, token first, tag last), blank lines between sentences,
    `-DOCSTART-` lines skipped.

    IOB1 files (the original CoNLL-2003 release, where I-X starts an entity unless it follows
    another X) are detected per file: an I-X that follows O, a different type or the sentence start
    cannot occur in IOB2, so one such tag marks the whole file as IOB1. The file is then converted
    to IOB2 (what the metrics and the Hub copies use) with one `warnings.warn` naming it.
    """
    valid = tuple(labels)
    sentences: list[dict[str, Any]] = []
    tokens: list[str] = []
    tags: list[str] = []
    iob1_line: int | None = None
    for number, line in enumerate(_read_lines(path), start=1):
        columns = line.split()
        if not columns or columns[0] == "-DOCSTART-":
            if tokens:
                sentences.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
            continue
        if len(columns) < 2:
            raise DataFormatError(
                path, number,
                f"expected at least 2 whitespace-separated columns (TOKEN ... NER_TAG), "
                f"found {len(columns)} ({line.strip()!r})",
                "put the tag after the token on the same line, e.g. 'EU NNP B-NP B-ORG'")
        tag = columns[-1]
        if tag not in valid:
            raise DataFormatError(
                path, number, f"unknown tag {tag!r} in the last column; valid tags: {', '.join(valid)}",
                "use one of the valid tags (the NER tag must be the last column)")
        prev = tags[-1] if tags else "O"
        if iob1_line is None and tag.startswith("I-") and prev[2:] != tag[2:]:
            iob1_line = number
        tokens.append(columns[0])
        tags.append(tag)
    if tokens:
        sentences.append({"tokens": tokens, "tags": tags})
    if not sentences:
        raise DataFormatError(path, None, "no sentences found (only blank or -DOCSTART- lines)",
                              "restore the file's token lines")
    if iob1_line is not None:
        warnings.warn(f"{path}: tags are IOB1 (line {iob1_line} starts an entity with I-); "
                      "converted the whole file to IOB2", stacklevel=2)
        for sentence in sentences:
            sentence["tags"] = _iob1_to_iob2(sentence["tags"])
    return sentences


def read_label_tsv(path: str | Path, num_labels: int = 2) -> list[dict[str, Any]]:
    """Read `label<TAB>sentence` lines (no header; labels 0..num_labels-1); blank lines are skipped."""
    rows = []
    fix_order = ("write 'LABEL<TAB>SENTENCE' with the integer label first and no header line "
                 "(GLUE's files are 'sentence<TAB>label' with a header: swap the columns, drop the header)")
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataFormatError(path, number,
                                  f"expected 'LABEL<TAB>SENTENCE', found no tab ({line[:60]!r})", fix_order)
        label, text = line.split("\t", 1)
        if "\t" in text:
            raise DataFormatError(path, number,
                                  f"expected 2 tab-separated columns, found {line.count(chr(9)) + 1} ({line[:60]!r})",
                                  "keep one tab between the label and the sentence; a tab inside the sentence "
                                  "must become a space")
        try:
            value = int(label)
        except ValueError:
            value = None
        if value is None or not 0 <= value < num_labels:
            raise DataFormatError(path, number,
                                  f"label {label!r} is not an integer in [0, {num_labels})", fix_order)
        if not text.strip():
            raise DataFormatError(path, number, "empty sentence after the label",
                                  "remove the line or add its sentence")
        rows.append({"text": text, "label": value})
    return rows


def read_parallel(source_path: str | Path, target_path: str | Path) -> list[dict[str, Any]]:
    """Read two aligned files, one sentence a line; line i of one translates line i of the other.
    Blank lines at the end of a file are ignored; any other empty line is an error, since an empty
    sentence has nothing to translate and an inserted blank line shifts every later pair."""
    sources, targets = _nonblank_until_end(source_path), _nonblank_until_end(target_path)
    if len(sources) != len(targets):
        short, long_ = (source_path, target_path) if len(sources) < len(targets) else (target_path, source_path)
        first = min(len(sources), len(targets)) + 1
        raise DataFormatError(
            short, first,
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}; "
            f"{short} ends after line {first - 1}, so line {first} of {long_} has no partner",
            "the two files must be aligned one sentence a line: restore the missing lines or "
            "remove the extra ones in both files")
    return [{"source": s, "target": t} for s, t in zip(sources, targets)]


def _nonblank_until_end(path: str | Path) -> list[str]:
    """The lines of one side of a parallel corpus, trailing blank lines dropped; an empty line
    before the end is a `DataFormatError` naming it."""
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DataFormatError(path, number, "empty line: an empty sentence, or a blank line that shifts "
                                  "every later line against the other file",
                                  "remove the line from both files, or restore its sentence")
    return lines


def read_csv_pairs(path: str | Path, source_column: str, target_column: str) -> list[dict[str, Any]]:
    """Read a CSV file with a header row (quoted fields may span lines; errors report the line a
    record starts on). Rows with an empty source carry nothing to learn from and are dropped with one
    warning giving their count (SAMSum's train split has one empty dialogue, the only such row in
    the real data). An empty target (a summary) is an error: the real data has none, and it would
    teach the model to write nothing."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    expected = f"a header row naming the columns {source_column!r} and {target_column!r}"
    header = next(reader)
    missing = [c for c in (source_column, target_column) if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"expected {expected}; the first line is {','.join(header)[:80]!r}",
                              f"add the header line (e.g. 'id,{source_column},{target_column}') "
                              "or rename the columns")
    src, tgt = header.index(source_column), header.index(target_column)
    rows, dropped, start = [], 0, reader.line_num + 1
    try:
        for record in reader:
            if record and len(record) != len(header):
                raise DataFormatError(path, start,
                                      f"expected {len(header)} fields ({','.join(header)}), found {len(record)}",
                                      "quote fields that contain commas or newlines with double quotes")
            if record and record[src].strip() and not record[tgt].strip():
                raise DataFormatError(path, start, f"empty {target_column!r} (the source is not empty)",
                                      f"write the row's {target_column}, or remove the row")
            if record:
                if record[src].strip():
                    rows.append({"source": record[src], "target": record[tgt]})
                else:
                    dropped += 1
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataFormatError(path, start, f"malformed CSV record ({e})",
                              "close every quoted field and double quotes inside quoted fields")
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} row(s) with an empty {source_column!r}", stacklevel=2)
    if not rows:
        raise DataFormatError(path, None, "no data rows after the header", "restore the file's rows")
    return rows


def first_field(row: dict[str, Any], *names: str) -> Any:
    """The value of the first of `names` present in a Hub row (data sets name the same column differently)."""
    for name in names:
        if name in row:
            return row[name]
    raise KeyError(f"none of the columns {names} is in the row (columns: {', '.join(row)})")
