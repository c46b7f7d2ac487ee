"""Reading one data file (CSV / TSV / JSON / JSONL / Parquet) into a :data:`Table` through the ``datasets``
packaged builders: the CSV checks, the JSON readers, :func:`read_text_robust` and the table helpers."""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
from transformers.utils import logging

from .errors import DatasetError

logger = logging.get_logger(__name__)

__all__ = ["SUPPORTED_SUFFIXES", "Table", "read_text_robust"]

SUPPORTED_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")

#: One table: column name -> that column's values (Python objects, one per row), as ``datasets.Dataset.to_dict()``.
Table = dict[str, list]


def read_text_robust(path: str | os.PathLike) -> str:
    """Read a text file as UTF-8; repair UTF-8-encoded surrogate pairs (CESU-8), else replace undecodable bytes."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("utf-8-sig", "surrogatepass").encode("utf-16", "surrogatepass").decode("utf-16")
        logger.info("%s is not strict UTF-8: decoded its UTF-8-encoded surrogate pairs", path)
        return text
    except UnicodeError:
        text = data.decode("utf-8-sig", errors="replace")
        logger.warning("%s is not valid UTF-8: replaced %d undecodable byte run(s)", path, text.count("\ufffd"))
        return text


def num_rows(table: Table) -> int:
    return len(next(iter(table.values()), ()))


def concat(tables: Sequence[Table]) -> Table:
    """The rows of ``tables`` one after the other; every column of any of them (None where a table lacks it)."""
    if len(tables) == 1:
        return tables[0]
    names = dict.fromkeys(name for table in tables for name in table)
    return {name: [v for t in tables for v in t.get(name, [None] * num_rows(t))] for name in names}


#: The ``datasets`` packaged builder (and its options) that reads each file type. CSV/TSV: only an empty field is
#: missing ("NA", "null", "None" are text), and the whole file is one chunk so that a column's type is inferred from
#: all of its rows (``datasets`` reads 10,000 rows at a time and fails when a later chunk changes a column's type).
#: Parquet: a fixed batch size, since the default (the first row group's size) is 0 in a file without rows.
_BUILDERS = {
    ".csv": ("csv", {"keep_default_na": False, "na_values": [""], "chunksize": None}),
    ".tsv": ("csv", {"delimiter": "\t", "keep_default_na": False, "na_values": [""], "chunksize": None}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {"batch_size": 10_000}),
}


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Reading a file shows no ``datasets`` progress bar (unless ``HF_DATASETS_DISABLE_PROGRESS_BARS=0`` asks)."""
    if datasets.utils.are_progress_bars_disabled() or datasets.config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def _read_with_datasets(path: Path) -> Table:
    """``path`` read by its ``datasets`` packaged builder (:data:`_BUILDERS`).

    The Arrow copy ``datasets`` prepares goes to a temporary folder that is deleted once the rows are read: a local
    file is read afresh each time and leaves nothing in the ``datasets`` cache. ``datasets`` reads ``data_files`` as
    glob patterns, so the name is escaped: ``ds[a].csv`` is that file, not ``dsa.csv``.
    """
    builder_name, options = _BUILDERS[path.suffix.lower()]
    with tempfile.TemporaryDirectory(prefix="ko-hf-read-") as cache, _no_progress_bars():
        builder = datasets.load_dataset_builder(builder_name, data_files=glob.escape(str(path)), cache_dir=cache,
                                                **options)
        builder.download_and_prepare()
        split = (builder.info.splits or {}).get("train")
        if split is None or not split.num_examples:  # datasets cannot build a split without rows
            return {}
        return builder.as_dataset("train", in_memory=True).to_dict()


def _read_json_document(path: Path) -> Table:
    """A ``.json`` file: one JSON document (a list of records, ``{"data": [records]}`` or a dict of columns),
    decoded by :func:`read_text_robust`; anything else is read as JSON lines, one record a line, from the same text.

    The ``datasets`` JSON builder reads the two dict shapes as a single row of lists and needs strict UTF-8 (Snips
    stores emoji as UTF-8-encoded surrogate pairs), so a ``.json`` file is parsed here.
    """
    text = read_text_robust(path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = _json_lines(path, text)
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, list)]
        if len(lists) == 1 and lists[0] and isinstance(lists[0][0], dict):
            obj = lists[0]  # {"data": [{...}, ...]}
        elif obj and all(isinstance(v, list) for v in obj.values()) and len({len(v) for v in obj.values()}) == 1:
            return {str(name): values for name, values in obj.items()}
    if isinstance(obj, list) and all(isinstance(record, dict) for record in obj):
        names = dict.fromkeys(str(name) for record in obj for name in record)
        return {name: [record.get(name) for record in obj] for name in names}
    raise DatasetError(f"{path}: expected a JSON list of records or a dict of columns, got {type(obj).__name__}")


def _json_lines(path: Path, text: str) -> list:
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: neither one JSON document nor JSON lines (line {number}: {err})") from None
    return records


#: A quoted field whose lines read as this many rows of the file's own shape is taken for an unclosed quote.
SWALLOWED_ROWS = 2


def _parse_error(path: Path, line: int, problem: str) -> DatasetError:
    return DatasetError(f"cannot read {path}, line {line}: {problem}")


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) of every record of a CSV text that is not blank, as pandas reads it
    (``"`` quotes, a doubled quote inside a quoted field); a malformed record raises ``csv.Error``, with the
    record's first line as ``err.line``."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    first = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            err.line = first
            raise
        if fields and not (len(fields) == 1 and not fields[0].strip()):
            yield first, reader.line_num, fields
        first = reader.line_num + 1


def _swallowed_rows(field: str, width: int, delimiter: str) -> int:
    """How many lines of a multi-line ``field`` read, on their own, as rows of ``width`` fields (the last line, which
    the closing quote ends, is not counted); 0 unless all of them do."""
    lines = field.splitlines()[:-1]
    shaped = [line for line in lines if len(next(csv.reader([line], delimiter=delimiter), [])) == width]
    return len(shaped) if lines and len(shaped) == len(lines) else 0


def _check_csv(path: Path, delimiter: str) -> None:
    """A CSV/TSV file that does not parse cleanly is an error naming the file and line, not a table that later
    fails with a misleading message: a record with another number of fields than the header, a quote that is never
    closed or is followed by more text, and a quoted field that swallows :data:`SWALLOWED_ROWS` or more lines that
    read as rows of their own (a stray quote that the next quote, many lines on, closes)."""
    width = None
    try:
        for first, last, fields in _csv_records(read_text_robust(path), delimiter):
            if width is None:
                width = len(fields)
                continue
            if len(fields) != width:
                raise _parse_error(path, first, f"{len(fields)} field(s) where the header (line 1) has {width}; a "
                                                f"field that holds {delimiter!r} must be quoted")
            swallowed = max((_swallowed_rows(f, width, delimiter) for f in fields if "\n" in f), default=0)
            if swallowed >= SWALLOWED_ROWS:
                raise _parse_error(path, first, f"a quote opens a field that runs to line {last}, over {swallowed} "
                                                "lines that read as rows of their own: a stray or unclosed quote? "
                                                "(a quote inside a quoted field is written twice: \"\")")
    except csv.Error as err:
        problem = "a quote opened here is never closed" if "end of data" in str(err) else str(err)
        raise _parse_error(path, err.line, f"{problem} (a field that holds {delimiter!r}, a quote or a line "
                                           "break is quoted, and a quote inside it written twice)") from None


def _read_table(path: Path) -> Table:
    suffix = path.suffix.lower()
    if suffix not in _BUILDERS:
        raise DatasetError(f"unsupported file type {suffix or path.name!r} ({path}); supported: "
                           f"{', '.join(SUPPORTED_SUFFIXES)}, or an aclImdb / Snips JSON / seq.in folder")
    builder, options = _BUILDERS[suffix]
    if builder == "csv":
        _check_csv(path, options.get("delimiter", ","))
    try:
        return _read_json_document(path) if suffix == ".json" else _read_with_datasets(path)
    except DatasetError:
        raise
    except Exception as err:  # parse errors of pandas/pyarrow, which datasets wraps in DatasetGenerationError
        cause = err.__cause__ if isinstance(err, datasets.exceptions.DatasetGenerationError) and err.__cause__ else err
        raise DatasetError(f"cannot read {path}: {type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}") \
            from err
