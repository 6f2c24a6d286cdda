"""Document import as a pipeline: a reader decodes the file, a parser yields rows, a builder stores them.

The file is streamed: rows are read, checked and inserted in chunks, so 100,000 rows never sit in memory at
once. A row that cannot be used is reported with its line number and reason; a file that cannot be read at
all (wrong encoding, no text column, nothing parseable) stores nothing and says why.
"""

from __future__ import annotations

import bisect
import codecs
import csv
import functools
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    InterfaceError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import Q
from django.utils import timezone

from annotation.exceptions import ImportRejected, InputRejected
from annotation.models import (
    Adjudication,
    Annotation,
    AnnotationLabel,
    AnnotationRevision,
    Document,
    ImportBatch,
    ImportRowError,
    Label,
    Membership,
    Project,
    new_random_key,
)
from annotation.services.audit import audit_record
from annotation.services.labeling import notify_learning, request_queue_rescore
from annotation.services.liveness import Heartbeat, stale_seconds
from annotation.services.taxonomy import taxonomy_hold
from annotation.spreadsheet_cells import cell_from_spreadsheet
from annotation.untrusted import json_read, storable

# Keys an export writes that describe Docket's state rather than the document; an import ignores them, so
# an export re-imports unchanged.
EXPORT_ONLY_FIELDS = frozenset({"annotations", "prediction", "status", "docket_id"})
CSV_LABEL_SEPARATORS = ("|", ";")
# csv refuses fields over 128 KiB by default; the text limit is enforced per row with a clear message instead.
csv.field_size_limit(64 * 1024 * 1024)
logger = logging.getLogger(__name__)
FIRST_ERRORS_KEPT = 100

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class ImportOptions:
    text_field: str = "text"
    id_field: str = "id"
    label_field: str | None = "labels"
    format: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"text_field": self.text_field, "id_field": self.id_field, "label_field": self.label_field}

    @functools.cached_property
    def fields_read(self) -> frozenset[str | None]:
        """The keys of a row that are not metadata: the columns the options name, and what an export adds
        (None, a CSV row's cells past the header, too). Kept on the options: a row asks for it every time."""
        return frozenset({self.text_field, self.id_field, self.label_field, "metadata", None} | EXPORT_ONLY_FIELDS)


@dataclass
class RowAnnotation:
    """One person's answer carried by a row (Label Studio annotations, a dataset's `annotations` column)."""

    labels: list[str]
    reviewer: str | None = None
    source: str = "reviewer"
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Row:
    """One parsed input row before it is checked against the project.

    `labels` are the document's final labels. `annotations`, when the format carries them, are the answers
    behind them: stored as their reviewers' where those are members of the project.
    """

    line: int
    text: Any = None
    external_id: str = ""
    labels: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    annotations: list[RowAnnotation] = field(default_factory=list)


class RowRejected(Exception):
    """This row cannot be stored; the message says why and the import goes on."""


# How much of the file format detection looks at: enough for the first record of any of the formats.
SNIFF_BYTES = 64 * 1024
# Formats read from a binary stream rather than from UTF-8 lines.
BINARY_FORMATS = frozenset({"parquet", "hf-dataset"})
FORMAT_NAMES = ", ".join(ImportBatch.Format.values)


def detect_format(file_name: str, explicit: str | None = None, head: bytes = b"") -> str:
    """The import format: the one named, else what the first bytes of the file say, else its extension.

    JSON files are told apart by their first record: Label Studio tasks have a `data` object, Prodigy's have
    `_input_hash`, `_task_hash` or `answer`, doccano's a `label` list; anything else is Docket's own JSONL.
    """
    if explicit:
        fmt = explicit.lower().lstrip(".")
        if fmt not in ImportBatch.Format.values:
            raise ImportRejected(f"Unknown import format '{explicit}'; use one of {FORMAT_NAMES}.")
        return fmt
    suffix = Path(file_name).suffix.lower().lstrip(".")
    if head.startswith(b"PAR1") or (not head and suffix == "parquet"):
        return "parquet"
    if head.startswith(b"PK\x03\x04") or (not head and suffix == "zip"):
        return "hf-dataset"
    sniffed = _sniff_json(head) if suffix in ("json", "jsonl", "ndjson", "") else None
    if sniffed:
        return sniffed
    fmt = {"ndjson": "jsonl", "json": "jsonl", "tsv": "csv", "text": "txt"}.get(suffix, suffix)
    if fmt in ("csv", "jsonl", "txt"):
        return fmt
    raise ImportRejected(
        f"Cannot tell the format of '{Path(file_name).name}': it is not Label Studio JSON, doccano or Prodigy "
        f"JSONL, Hugging Face Parquet or a zipped dataset directory, nor Docket's CSV, JSONL or text (.csv, "
        f".jsonl, .txt). Name the format ({FORMAT_NAMES}); nothing was imported."
    )


def _sniff_json(head: bytes) -> str | None:
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "label-studio"  # a JSON array of tasks: what Label Studio exports and imports
    if not text.startswith("{"):
        return None
    try:
        first = json.loads(text.split("\n", 1)[0])
    except ValueError:
        # One object over several lines: a pretty-printed Label Studio task; Docket's JSONL is one line each.
        return "label-studio" if '"data"' in text else None
    if not isinstance(first, dict):
        return None
    if isinstance(first.get("data"), dict):
        return "label-studio"
    if {"_input_hash", "_task_hash", "answer"} & first.keys():
        return "prodigy"
    if isinstance(first.get("label"), list) and "labels" not in first:
        return "doccano"
    return "jsonl"


def file_head(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as stream:
        return stream.read(SNIFF_BYTES)


def content_hash(text: str) -> str:
    """Identity of a document's content: the same text (ignoring surrounding whitespace) is a duplicate."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()


# --- Reader -------------------------------------------------------------------------------------------------


class _LineCountingText:
    """UTF-8 lines from a binary stream, decoded one line at a time so a bad byte is reported with its line.

    Splitting bytes on newlines is safe for UTF-8: a newline byte never occurs inside a multi-byte character.
    """

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.lines_read = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw_line = self._raw.readline()
        if not raw_line:
            raise StopIteration
        if self.lines_read == 0 and raw_line.startswith(codecs.BOM_UTF8):
            raw_line = raw_line[len(codecs.BOM_UTF8) :]
        self.lines_read += 1
        try:
            return raw_line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ImportRejected(
                f"The file is not UTF-8 text (undecodable byte 0x{raw_line[error.start]:02x} on line "
                f"{self.lines_read}). Save it as UTF-8 (with or without BOM) and import it again; "
                f"nothing was imported."
            ) from error


# --- Parsers ------------------------------------------------------------------------------------------------


def _labels_from_value(value: Any, line: int) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RowRejected("labels must be a list of label keys (strings)")
        return [v.strip() for v in value if v.strip()]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                return _labels_from_value(json_read(stripped, what="the labels"), line)
            except json.JSONDecodeError as error:
                raise RowRejected(f"labels look like a JSON list but are not valid JSON ({error.msg})") from error
        for separator in CSV_LABEL_SEPARATORS:
            if separator in stripped:
                return [part.strip() for part in stripped.split(separator) if part.strip()]
        return [stripped]
    raise RowRejected(f"labels must be a string or a list, not {type(value).__name__}")


# Built once: `dict | list | bool` written in the check below made a new union object for every row.
_NOT_AN_ID = (dict, list, bool)


def _row_from_mapping(record: dict[str, Any], line: int, options: ImportOptions, *, checked: bool = False) -> Row:
    """`checked`: the record was read by `json_read`, which refused NUL characters and deep nesting already."""
    row = Row(line=line)
    try:
        # NUL characters and deep nesting anywhere in the row: PostgreSQL would refuse the whole chunk later.
        if not checked:
            storable(record, what="the row")
        row.text = record.get(options.text_field)
        external_id = record.get(options.id_field)
        if isinstance(external_id, _NOT_AN_ID):
            raise RowRejected(f"the id must be text or a number, not {type(external_id).__name__}")
        row.external_id = "" if external_id is None else str(external_id).strip()
        if options.label_field:
            labels = record.get(options.label_field)
            if labels is not None and labels != "":  # most rows carry none
                row.labels = _labels_from_value(labels, line)
        metadata = record.get("metadata")
        if isinstance(metadata, str) and metadata.strip().startswith("{"):
            try:
                metadata = json_read(metadata, what="the metadata column")
            except json.JSONDecodeError as error:
                raise RowRejected(f"the metadata column is not a valid JSON object ({error.msg})") from error
        row.metadata = dict(metadata) if isinstance(metadata, dict) else {}
        used = options.fields_read
        row.metadata.update(
            {key: value for key, value in record.items() if key not in used and value is not None and value != ""}
        )
    except (RowRejected, InputRejected) as error:
        row.error = str(error)
    return row


def parse_jsonl(lines: Iterator[str], options: ImportOptions) -> Iterator[Row]:
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json_read(line, what="the line")
        except json.JSONDecodeError as error:
            yield Row(line=line_no, error=f"bad JSON: {error.msg} at column {error.colno}")
            continue
        except InputRejected as error:
            yield Row(line=line_no, error=str(error))
            continue
        if not isinstance(record, dict):
            yield Row(line=line_no, error=f"each line must be a JSON object, found {type(record).__name__}")
            continue
        yield _row_from_mapping(record, line_no, options, checked=True)


def parse_csv(lines: _LineCountingText, options: ImportOptions) -> Iterator[Row]:
    reader = csv.DictReader(lines)
    try:
        header = reader.fieldnames
    except csv.Error as error:
        raise ImportRejected(f"The CSV header cannot be read ({error}); nothing was imported.") from error
    if not header:
        raise ImportRejected("The file is empty: there is no CSV header row; nothing was imported.")
    if options.text_field not in header:
        raise ImportRejected(
            f"The CSV has no '{options.text_field}' column (columns: {', '.join(h for h in header if h)}). "
            f"Name the text column with --text-field; nothing was imported."
        )
    start_line = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield Row(line=start_line, error=f"malformed CSV: {error}")
            start_line = reader.line_num + 1
            continue
        if None in record:  # more cells than header columns
            yield Row(line=start_line, error=f"the row has more cells than the header's {len(header)} columns")
        else:
            # Docket's CSV export writes '=... for a cell starting =...; reading it back gives the text it was.
            record = {key: cell_from_spreadsheet(value) for key, value in record.items()}
            yield _row_from_mapping(record, start_line, options)
        start_line = reader.line_num + 1


def parse_txt(lines: Iterator[str], options: ImportOptions) -> Iterator[Row]:
    for line_no, line in enumerate(lines, start=1):
        text = line.rstrip("\r\n")
        if text.strip():
            yield Row(line=line_no, text=text)


# --- Parsers for other tools' formats -----------------------------------------------------------------------
# Label Studio, doccano and Prodigy files are text, read line by line like Docket's own; Parquet and dataset
# directories are read a record batch at a time. Each yields the same Rows, so the checks and the builder are
# the same for every format.


def _json_items(lines: _LineCountingText) -> Iterator[tuple[int, Any]]:
    """The values of a JSON array (or of JSON values one after another, as in JSONL), each with the line it
    starts on, decoded as the lines arrive so that a large file never sits in memory whole."""
    decoder = json.JSONDecoder()
    buffer, pos, line, exhausted = "", 0, 1, False
    in_array: bool | None = None

    def more() -> bool:
        nonlocal buffer, pos, exhausted
        if exhausted:
            return False
        buffer = buffer[pos:]
        pos = 0
        chunk = "".join(next(lines, "") for _ in range(256))
        if not chunk:
            exhausted = True
        buffer += chunk
        return bool(chunk)

    def skip(separators: str) -> None:
        nonlocal pos, line
        while True:
            while pos < len(buffer) and buffer[pos] in separators:
                line += buffer[pos] == "\n"
                pos += 1
            if pos < len(buffer) or not more():
                return

    while True:
        skip(" \t\r\n,\ufeff" if in_array is not None else " \t\r\n\ufeff")
        if pos >= len(buffer):
            if in_array:
                raise ImportRejected(
                    f"The JSON array is not closed (a ']' is missing at line {line}); nothing was imported."
                )
            return
        if in_array is None:
            in_array = buffer[pos] == "["
            if in_array:
                pos += 1
                continue
        if in_array and buffer[pos] == "]":
            return
        start_line = line
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
                break
            except json.JSONDecodeError as error:
                if not more():
                    raise ImportRejected(
                        f"Bad JSON in the record starting on line {start_line}: {error.msg}; nothing was imported."
                    ) from error
            except RecursionError as error:
                raise ImportRejected(
                    f"The record on line {start_line} is nested too deeply; nothing was imported."
                ) from error
        line += buffer.count("\n", pos, end)
        pos = end
        yield start_line, value


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as error:
            raise RowRejected(f"'{value}' is not a date and time (ISO 8601)") from error
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _label_studio_choices(result: Any) -> list[str]:
    if not isinstance(result, list):
        raise RowRejected("an annotation's result must be a list")
    keys: list[str] = []
    for region in result:
        if isinstance(region, dict) and region.get("type") == "choices":
            choices = (region.get("value") or {}).get("choices") or []
            keys.extend(_labels_from_value(choices, 0))
    return keys


def _label_studio_reviewer(annotation: dict[str, Any]) -> str | None:
    # Docket writes the username; Label Studio writes "email, id" in created_username, or an object.
    name = annotation.get("created_username")
    if isinstance(name, str) and name.strip():
        return name.split(",")[0].strip()
    completed_by = annotation.get("completed_by")
    if isinstance(completed_by, dict):
        return completed_by.get("username") or completed_by.get("email")
    return None


def _row_from_label_studio_task(task: Any, line: int, options: ImportOptions) -> Row:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        return Row(line=line, error="a Label Studio task must be an object with a 'data' object")
    data = task["data"]
    record = {key: value for key, value in data.items() if key != "docket_id"}
    row = _row_from_mapping({**record, options.label_field or "labels": None}, line, options)
    if row.error:
        return row
    if "docket_id" not in data and task.get("id") is not None:
        row.metadata["label_studio_id"] = task["id"]
    try:
        answers = []
        for annotation in task.get("annotations") or []:
            if not isinstance(annotation, dict):
                raise RowRejected("each annotation must be an object")
            if annotation.get("was_cancelled"):
                continue
            answers.append(
                (
                    bool(annotation.get("ground_truth")),
                    RowAnnotation(
                        labels=_label_studio_choices(annotation.get("result") or []),
                        reviewer=_label_studio_reviewer(annotation),
                        source=annotation.get("docket_source") or Annotation.Source.REVIEWER,
                        created_at=_parse_time(annotation.get("created_at")),
                        updated_at=_parse_time(annotation.get("updated_at")),
                    ),
                )
            )
        row.annotations = [answer for _, answer in answers]
        docket = (task.get("meta") or {}).get("docket") if isinstance(task.get("meta"), dict) else None
        if isinstance(docket, dict) and "labels" in docket:
            row.labels = _labels_from_value(docket["labels"], line)
        else:
            # A file from Label Studio: its ground-truth annotation decides, else the answers when they agree.
            decided = [answer.labels for truth, answer in answers if truth]
            label_sets = {tuple(sorted(answer.labels)) for answer in row.annotations}
            row.labels = decided[0] if decided else (list(row.annotations[0].labels) if len(label_sets) == 1 else [])
    except (RowRejected, InputRejected) as error:
        row.error = str(error)
    return row


def parse_label_studio(lines: _LineCountingText, options: ImportOptions) -> Iterator[Row]:
    for line, task in _json_items(lines):
        try:
            storable(task, what="the task")
        except InputRejected as error:
            yield Row(line=line, error=str(error))
            continue
        yield _row_from_label_studio_task(task, line, options)


def parse_doccano(lines: Iterator[str], options: ImportOptions) -> Iterator[Row]:
    # doccano's text classification export is JSONL with a `label` list; other keys are metadata, as in Docket's.
    label_field = "label" if options.label_field == "labels" else options.label_field
    yield from parse_jsonl(lines, replace(options, label_field=label_field))


def parse_prodigy(lines: Iterator[str], options: ImportOptions) -> Iterator[Row]:
    """Prodigy textcat: `accept` holds the chosen options (or `label` a binary decision); only an accepted
    answer labels the document."""
    for row_or_record in _jsonl_records(lines):
        if isinstance(row_or_record, Row):
            yield row_or_record
            continue
        line, record = row_or_record
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        mapping = {
            **{key: value for key, value in record.items() if not key.startswith("_") and key not in PRODIGY_FIELDS},
            "metadata": dict(meta),
        }
        row = _row_from_mapping({**mapping, options.label_field or "labels": None}, line, options, checked=True)
        if row.error:
            yield row
            continue
        try:
            if record.get("answer") == "accept":
                chosen = record.get("accept") if "options" in record or "accept" in record else [record.get("label")]
                row.labels = _labels_from_value(chosen, line)
            annotator = record.get("_annotator_id")
            if row.labels and isinstance(annotator, str) and annotator:
                row.annotations = [
                    RowAnnotation(
                        labels=row.labels, reviewer=annotator, updated_at=_parse_time(record.get("_timestamp"))
                    )
                ]
        except RowRejected as error:
            row.error = str(error)
        yield row


# Prodigy's own keys: an import reads them as the answer, not as metadata.
PRODIGY_FIELDS = frozenset({"options", "accept", "answer", "label", "meta", "spans", "tokens", "config"})


def _jsonl_records(lines: Iterator[str]) -> Iterator[Row | tuple[int, dict[str, Any]]]:
    """Each non-blank line as (line number, object), or a rejected Row saying why it is not one."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json_read(line, what="the line")
        except json.JSONDecodeError as error:
            yield Row(line=line_no, error=f"bad JSON: {error.msg} at column {error.colno}")
            continue
        except InputRejected as error:
            yield Row(line=line_no, error=str(error))
            continue
        if not isinstance(record, dict):
            yield Row(line=line_no, error=f"each line must be a JSON object, found {type(record).__name__}")
            continue
        yield line_no, record


def _hf_label_names(feature: Any) -> tuple[list[str] | None, bool]:
    """The names a ClassLabel (or a sequence of them) stands for, and whether the column is a sequence."""
    if not isinstance(feature, dict):
        return None, isinstance(feature, list)
    if feature.get("_type") == "ClassLabel":
        return list(feature.get("names") or []), False
    if feature.get("_type") in ("Sequence", "List", "LargeList"):
        names, _ = _hf_label_names(feature.get("feature"))
        return names, True
    return None, False


def _hf_features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The `datasets` features stored in an Arrow or Parquet schema (its "huggingface" metadata)."""
    raw = (metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    return (info.get("info") or {}).get("features") or {}


def _rows_from_arrow(
    batches: Iterable[Any], column_names: list[str], features: dict[str, Any], options: ImportOptions
) -> Iterator[Row]:
    label_field = options.label_field
    if label_field == "labels" and "labels" not in column_names and "label" in column_names:
        label_field = "label"
    names, _ = _hf_label_names(features.get(label_field)) if label_field else (None, False)
    number = 0
    for batch in batches:
        for record in batch.to_pylist():
            number += 1
            yield _row_from_dataset_record(record, number, options, label_field, names)


def _class_label_keys(value: Any, names: list[str] | None) -> Any:
    if names is None:
        return value
    if isinstance(value, list):
        return [key for v in value for key in _class_label_keys(v, names)]
    if value is None or value < 0:
        return []  # -1: ClassLabel's "no label"
    if value >= len(names):
        raise RowRejected(f"label number {value} is not one of the {len(names)} ClassLabel names")
    return [names[value]]


def _row_from_dataset_record(
    record: dict[str, Any], number: int, options: ImportOptions, label_field: str | None, names: list[str] | None
) -> Row:
    try:
        labels = _class_label_keys(record.get(label_field), names) if label_field else None
    except RowRejected as error:
        return Row(line=number, error=str(error))
    annotations = record.pop("annotations", None)
    record = {key: value for key, value in record.items() if key != label_field}
    row = _row_from_mapping({**record, "labels": labels}, number, replace(options, label_field="labels"))
    if row.error:
        return row
    try:
        row.annotations = [
            RowAnnotation(
                labels=_labels_from_value(a.get("labels"), number),
                reviewer=a.get("reviewer") or None,
                source=a.get("source") or Annotation.Source.REVIEWER,
                created_at=_parse_time(a.get("created_at")),
                updated_at=_parse_time(a.get("updated_at")),
            )
            for a in annotations or []
            if isinstance(a, dict)
        ]
    except RowRejected as error:
        row.error = str(error)
    return row


def parse_parquet(stream: IO[bytes], options: ImportOptions) -> Iterator[Row]:
    """A Parquet file as `datasets` writes it, read one record batch at a time; ClassLabel numbers become
    label keys by the names in the file's features."""
    import pyarrow.parquet as pq  # imported when used: most imports never need Arrow

    try:
        parquet = pq.ParquetFile(stream)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/ArrowException family
        raise ImportRejected(f"The file is not a readable Parquet file ({error}); nothing was imported.") from error
    schema = parquet.schema_arrow
    _require_text_column(schema.names, options)
    yield from _rows_from_arrow(
        parquet.iter_batches(batch_size=settings.DOCKET_IMPORT_CHUNK),
        schema.names,
        _hf_features(schema.metadata),
        options,
    )


def parse_dataset_directory(stream: IO[bytes], options: ImportOptions) -> Iterator[Row]:
    """A `Dataset.save_to_disk` directory, zipped: its Arrow files in the order state.json lists them."""
    import pyarrow as pa

    try:
        archive = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as error:
        raise ImportRejected(f"The file is not a zip archive ({error}); nothing was imported.") from error
    with archive:
        states = [name for name in archive.namelist() if Path(name).name == "state.json"]
        if len(states) != 1:
            raise ImportRejected(
                "A dataset directory (Dataset.save_to_disk, zipped) has one state.json; this archive has "
                f"{len(states)}. Zip a single split's directory; nothing was imported."
            )
        root = str(Path(states[0]).parent)
        state = json.loads(archive.read(states[0]))
        files = [
            str(Path(root) / entry["filename"]) if root != "." else entry["filename"]
            for entry in state.get("_data_files", [])
        ]
        features: dict[str, Any] = {}
        info_name = str(Path(root) / "dataset_info.json") if root != "." else "dataset_info.json"
        if info_name in archive.namelist():
            features = json.loads(archive.read(info_name)).get("features") or {}
        for name in files:
            with archive.open(name) as arrow_file:
                reader = pa.ipc.open_stream(arrow_file)
                if name == files[0]:
                    features = features or _hf_features(reader.schema.metadata)
                    _require_text_column(reader.schema.names, options)
                yield from _rows_from_arrow(reader, reader.schema.names, features, options)


def _require_text_column(names: list[str], options: ImportOptions) -> None:
    if options.text_field not in names:
        raise ImportRejected(
            f"The dataset has no '{options.text_field}' column (columns: {', '.join(names)}). Name the text "
            f"column with --text-field; nothing was imported."
        )


PARSERS = {
    "csv": parse_csv,
    "jsonl": parse_jsonl,
    "txt": parse_txt,
    "label-studio": parse_label_studio,
    "doccano": parse_doccano,
    "prodigy": parse_prodigy,
    "parquet": parse_parquet,
    "hf-dataset": parse_dataset_directory,
}


# --- Builder ------------------------------------------------------------------------------------------------


_ID_TAKEN = "id '{}' already exists in this project with a different text"
# The staging table of `_Builder._insert_staged`, and the document fields that vary by row (staged by COPY).
# Two staging tables taken in turn: each chunk's statement empties the other one (the chunk before, already
# stored) by TRUNCATE in the same round trip. A DELETE would leave its rows in the table until the transaction
# ends, and every later chunk would read past all of them.
_STAGES = ("docket_import_stage", "docket_import_stage_next")
_STAGED = ("external_id", "text", "metadata", "content_hash", "status", "random_key")


def _copy_text(value: str) -> str:
    """`value` as a field of COPY's text format: backslash, tab and line breaks escaped (NUL is refused earlier)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _answered(row: Row) -> bool:
    """Whether the row carries labels or answers: its document is stored labeled, with them."""
    return bool(row.labels or row.annotations)


class _Builder:
    """Checks rows against the project and stores them in chunks: documents, then imported annotations."""

    def __init__(self, batch: ImportBatch, chunk_size: int):
        self.batch = batch
        self.project = batch.project
        self.chunk_size = chunk_size
        self.max_chars = settings.DOCKET_MAX_TEXT_CHARS
        self.labels = self.current_labels()
        # Usernames of the project's members: an annotation a file attributes to one of them is stored as theirs.
        self.members = dict(Membership.objects.filter(project=self.project).values_list("user__username", "user_id"))
        self.seen_hashes: set[str] = set()
        self.seen_ids: set[str] = set()
        self.pending: list[tuple[Row, str]] = []
        self.errors: list[ImportRowError] = []
        # The first problems (by line), kept aside so a refused file can still show them after its rollback.
        self.first_errors: list[tuple[int, str]] = []
        self.stage_ready = False
        self.chunks_staged = 0
        # On PostgreSQL a chunk is written by a thread of its own while the next chunk is read and checked: the
        # database server and this process then work at the same time (see `_write_staged`).
        self.database = connections[DEFAULT_DB_ALIAS]
        self.writer: ThreadPoolExecutor | None = None
        self.in_flight: tuple[list[tuple[Row, str]], Future] | None = None
        # Metadata as COPY reads it: JSON as the model field writes it (its encoder), characters unescaped.
        self._metadata_json = (Document._meta.get_field("metadata").encoder or json.JSONEncoder)(
            ensure_ascii=False
        ).encode

    def current_labels(self) -> dict[str, Label]:
        return {label.key: label for label in Label.objects.filter(taxonomy__project=self.project, deprecated=False)}

    def check(self, row: Row) -> str:
        if row.error:
            raise RowRejected(row.error)
        if row.text is None or (isinstance(row.text, str) and not row.text.strip()):
            raise RowRejected("missing text")
        if not isinstance(row.text, str):
            raise RowRejected(f"text must be a string, not {type(row.text).__name__}")
        if "\x00" in row.text:
            raise RowRejected("text contains a NUL character")
        if len(row.text) > self.max_chars:
            raise RowRejected(f"text is {len(row.text):,} characters, over the limit of {self.max_chars:,}")
        if len(row.external_id) > 255:
            raise RowRejected("id is longer than 255 characters")
        if row.labels or row.annotations:  # most imported rows carry none
            self.check_labels(row)
        return content_hash(row.text)

    def check_labels(self, row: Row) -> None:
        given = row.labels + [key for answer in row.annotations for key in answer.labels]
        unknown = list(dict.fromkeys(key for key in given if key not in self.labels))
        if unknown:
            known = ", ".join(sorted(self.labels)) or "none: the project has no labels yet"
            raise RowRejected(f"unknown label {', '.join(repr(k) for k in unknown)} (project labels: {known})")
        if len(set(row.labels)) > 1 and not self.project.multi_label:
            raise RowRejected(f"{len(set(row.labels))} labels on a single-label project")
        if not self.project.multi_label and any(len(set(a.labels)) > 1 for a in row.annotations):
            raise RowRejected("an annotation with several labels on a single-label project")

    def add(self, row: Row) -> None:
        self.batch.rows_seen += 1
        try:
            digest = self.check(row)
        except RowRejected as error:
            self.reject(row.line, str(error))
            return
        if digest in self.seen_hashes:
            self.batch.duplicate_count += 1
            return
        if row.external_id and row.external_id in self.seen_ids:
            self.reject(row.line, f"id '{row.external_id}' appears earlier in this file with a different text")
            return
        self.seen_hashes.add(digest)
        if row.external_id:
            self.seen_ids.add(row.external_id)
        self.pending.append((row, digest))
        if len(self.pending) >= self.chunk_size:
            self.flush()

    def reject(self, line: int, reason: str) -> None:
        self.batch.rejected_count += 1
        if len(self.first_errors) < FIRST_ERRORS_KEPT or line < self.first_errors[-1][0]:
            # The lowest lines: a chunk's refused ids are known only while the next chunk is being read.
            bisect.insort(self.first_errors, (line, reason))
            del self.first_errors[FIRST_ERRORS_KEPT:]
        self.errors.append(ImportRowError(batch=self.batch, line=line, reason=reason))
        if len(self.errors) >= self.chunk_size:
            self.settle()  # the connection is free for this write only once no chunk is being written
            ImportRowError.objects.bulk_create(self.errors)
            self.errors = []

    def flush(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        # The staging table lives as long as the import's transaction (every import runs in one); the rows go in
        # with psycopg2's copy_expert.
        if (
            connection.vendor == "postgresql"
            and connection.in_atomic_block
            and connection.Database.__name__ == "psycopg2"
        ):
            self._write_staged(pending)
        else:
            created, labeled = self._insert_with_orm(pending)
            self.batch.created_count += created
            self._store_labels(labeled)

    def _write_staged(self, pending: list[tuple[Row, str]]) -> None:
        """Hand the chunk to the writer thread, once the chunk before it is written and its outcomes counted.

        While PostgreSQL inserts a chunk (and computes its search vectors and index entries), this thread reads,
        checks and hashes the next: psycopg2 lets other threads run while it waits on the server. One chunk at
        most is in flight, so each chunk's duplicate and id checks see every chunk before it, as before.
        """
        copy_sql, rows, sql, params = self._stage(pending)
        self.settle()
        if self.writer is None:
            # The writer uses this thread's connection, inside this thread's transaction; Django allows that
            # once told. Nothing else uses the connection while a chunk is in flight (see `settle`).
            self.database.inc_thread_sharing()
            self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"import-{self.batch.pk}")
        self.in_flight = (pending, self.writer.submit(self._run_staged, copy_sql, rows, sql, params))

    def settle(self) -> None:
        """Wait for the chunk in flight, if any, and count its outcomes (a database error is raised here)."""
        if self.in_flight is None:
            return
        (pending, future), self.in_flight = self.in_flight, None
        created, labeled = self._outcomes(pending, future.result())
        self.batch.created_count += created
        self._store_labels(labeled)

    def close(self) -> None:
        """Stop the writer thread; a chunk still in flight (the import failed meanwhile) is waited for, so that
        the transaction is rolled back only once nothing else uses the connection."""
        if self.in_flight is not None:
            (_, future), self.in_flight = self.in_flight, None
            futures_wait([future])
        if self.writer is not None:
            self.writer.shutdown()
            self.writer = None
            self.database.dec_thread_sharing()

    def _insert_with_orm(self, pending: list[tuple[Row, str]]) -> tuple[int, list[tuple[Row, Document]]]:
        """Any database: look up the chunk's known texts and ids, then a bulk insert of the rest. Returns how
        many documents were created, and the labeled ones with their new ids."""
        digests = [digest for _, digest in pending]
        existing_hashes = set(
            Document.objects.filter(project=self.project, content_hash__in=digests).values_list(
                "content_hash", flat=True
            )
        )
        ids = [row.external_id for row, _ in pending if row.external_id]
        existing_ids = set(
            Document.objects.filter(project=self.project, external_id__in=ids).values_list("external_id", flat=True)
        )
        to_create: list[tuple[Row, Document]] = []
        for row, digest in pending:
            if digest in existing_hashes:
                self.batch.duplicate_count += 1
                continue
            if row.external_id in existing_ids:
                self.reject(row.line, _ID_TAKEN.format(row.external_id))
                continue
            to_create.append((row, self._document(row, digest)))
        Document.objects.bulk_create([document for _, document in to_create])
        return len(to_create), [(row, document) for row, document in to_create if _answered(row)]

    def _document(self, row: Row, digest: str) -> Document:
        return Document(
            project=self.project,
            external_id=row.external_id,
            text=row.text,
            metadata=row.metadata,
            content_hash=digest,
            import_batch=self.batch,
            status=Document.Status.LABELED if _answered(row) else Document.Status.QUEUED,
        )

    def _stage(self, pending: list[tuple[Row, str]]) -> tuple[str, io.StringIO, str, list[Any]]:
        """PostgreSQL: the chunk as COPY into a temporary table reads it, and one statement that sorts it out:
        texts the project holds already are duplicates, ids it holds already are refused, the rest are inserted
        in file order. Only what needs Python comes back: those two kinds of row, and the new ids of labeled rows.

        The same outcomes as `_insert_with_orm`, row by row, at a fraction of the cost: rows are written to COPY
        straight from the parsed values (a model instance per row cost more than parsing and checking it), and
        only labeled rows become `Document`s, after the insert, for their annotations.
        """
        fields = {f.attname: f for f in Document._meta.concrete_fields if not f.primary_key}
        staged = [fields[name] for name in _STAGED]
        quote = connection.ops.quote_name
        metadata_json = self._metadata_json
        labeled_status, queued_status = Document.Status.LABELED.value, Document.Status.QUEUED.value
        # COPY's text format, one line per row in the order of _STAGED: PostgreSQL reads it with less work than
        # CSV, and only a value holding a backslash, tab or line break needs escaping (few do). Each row its own
        # random_key, as the model's default gives one.
        buffer = io.StringIO(
            "".join(
                [
                    f"{position}\t{_copy_text(row.external_id)}\t{_copy_text(row.text)}\t"
                    f"{_copy_text(metadata_json(row.metadata)) if row.metadata else '{}'}\t{digest}\t"
                    f"{labeled_status if row.labels or row.annotations else queued_status}\t{new_random_key()!r}\n"
                    for position, (row, digest) in enumerate(pending)
                ]
            )
        )
        names = ", ".join(["position", *(quote(f.column) for f in staged)])
        stage, other = _STAGES[self.chunks_staged % 2], _STAGES[(self.chunks_staged + 1) % 2]
        self.chunks_staged += 1
        copy_sql = f"COPY {stage} ({names}) FROM STDIN"
        if not self.stage_ready:  # the first chunk: nothing is in flight yet
            columns = ", ".join(f"{quote(f.column)} {f.db_type(connection)}" for f in staged)
            # Emptied too: an earlier import in the same transaction (a caller's atomic block, a test) left its
            # last chunk in one of them, which this import's first statement would otherwise store again.
            with connection.cursor() as cursor:
                cursor.execute(
                    "; ".join(
                        [
                            *(
                                f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} (position integer, {columns}) "
                                "ON COMMIT DROP"
                                for name in _STAGES
                            ),
                            f"TRUNCATE {', '.join(_STAGES)}",
                        ]
                    )
                )
            self.stage_ready = True
        # Columns not staged are the same for every row of the chunk (project, batch, created_at, defaults),
        # taken from one document as the ORM would save it.
        template = Document(project=self.project, import_batch=self.batch)
        shared = [f for name, f in fields.items() if name not in _STAGED]
        shared_params = [f.get_db_prep_save(f.pre_save(template, True), connection) for f in shared]
        table = quote(Document._meta.db_table)
        insert_columns = ", ".join(quote(f.column) for f in [*staged, *shared])
        insert_values = ", ".join([*(f"s.{quote(f.column)}" for f in staged), *(["%s"] * len(shared))])
        # No join between the statement's parts (PostgreSQL has no statistics for them and may join 2,000
        # rows to 2,000 row by row): refused rows come back with their position, labeled new rows with their
        # content hash, which is unique in the chunk.
        # Each row's two checks are one probe of a unique index each, written as scalar subqueries with LIMIT 1
        # rather than EXISTS: PostgreSQL may run an EXISTS as a hashed subplan that reads all of the project's
        # documents, once per chunk (it has no statistics for the rows this transaction inserted): an import
        # then cost more with every chunk, and an import into a large project read it whole 100 times over.
        sql = (
            f"TRUNCATE {other}; "
            f"WITH staged AS (SELECT * FROM {stage}), "
            "known AS (SELECT s.*, "
            f"(SELECT 1 FROM {table} d WHERE d.project_id = %s AND d.content_hash = s.content_hash LIMIT 1) "
            "IS NOT NULL AS duplicate, "
            # d.external_id <> '' lets PostgreSQL use the partial unique index on (project, external_id):
            # without it every row's lookup walked the project's documents.
            f"(s.external_id <> '' AND (SELECT 1 FROM {table} d WHERE d.project_id = %s "
            "AND d.external_id <> '' AND d.external_id = s.external_id LIMIT 1) IS NOT NULL) AS id_taken "
            "FROM staged s), "
            f"inserted AS (INSERT INTO {table} ({insert_columns}) SELECT {insert_values} "
            "FROM known s WHERE NOT s.duplicate AND NOT s.id_taken "
            "ORDER BY s.position RETURNING id, content_hash, status) "
            "(SELECT position, duplicate, NULL::bigint, NULL FROM known WHERE duplicate OR id_taken "
            "ORDER BY position) UNION ALL (SELECT NULL, NULL, id, content_hash FROM inserted WHERE status = %s)"
        )
        params = [self.project.pk, self.project.pk, *shared_params, Document.Status.LABELED]
        return copy_sql, buffer, sql, params

    def _run_staged(self, copy_sql: str, rows: io.StringIO, sql: str, params: list[Any]) -> list[tuple]:
        """The chunk's COPY and statement, on the import's connection (called by the writer thread)."""
        with self.database.cursor() as cursor:
            # The whole chunk in one read: psycopg2 reads 8 KiB at a time by default, and takes the GIL (busy with
            # the next chunk) for each read. Positional: Django's debug cursor passes only positional arguments on.
            cursor.copy_expert(copy_sql, rows, max(len(rows.getvalue()), 8192))
            cursor.execute(sql, params)
            return cursor.fetchall()

    def _outcomes(
        self, pending: list[tuple[Row, str]], outcomes: list[tuple]
    ) -> tuple[int, list[tuple[Row, Document]]]:
        """Count a written chunk's refused rows; returns how many documents were created, and the labeled ones
        with their new ids."""
        labeled: list[tuple[Row, Document]] = []
        refused = 0
        position_of: dict[str, int] = {}
        for position, duplicate, document_id, digest in outcomes:
            if position is not None:
                row = pending[position][0]
                refused += 1
                if duplicate:
                    self.batch.duplicate_count += 1
                else:
                    self.reject(row.line, _ID_TAKEN.format(row.external_id))
                continue
            if not position_of:
                position_of = {digest: position for position, (_, digest) in enumerate(pending)}
            row = pending[position_of[digest]][0]
            document = self._document(row, digest)
            document.pk = document_id
            document._state.adding = False
            labeled.append((row, document))
        labeled.sort(key=lambda pair: pair[1].pk)  # in file order, as the ids were given
        # New unlabeled rows do not come back: they are all the others.
        return len(pending) - refused, labeled

    def _store_labels(self, labeled: list[tuple[Row, Document]]) -> None:
        """Each row's answers: its reviewers' own where the format names them and they are members here, else
        one imported annotation with the final labels; a decision that their answers alone would not give
        (an adjudication, a gold answer) is kept as an imported adjudication."""
        if not labeled:
            return
        answers: list[tuple[Row, Annotation, RowAnnotation]] = []
        adjudications = []
        for row, document in labeled:
            carried = _answers_to_store(row.annotations, self.members)
            if not carried and row.labels:
                carried = [RowAnnotation(labels=row.labels, source=Annotation.Source.IMPORT)]
            for answer in carried:
                reviewer_id = self.members.get(answer.reviewer) if answer.reviewer else None
                source = answer.source if reviewer_id and answer.source in Annotation.Source.values else "import"
                answers.append((row, Annotation(document=document, reviewer_id=reviewer_id, source=source), answer))
            stated = {tuple(sorted(set(a.labels))) for a in carried}
            if row.labels and stated != {tuple(sorted(set(row.labels)))}:
                adjudications.append(
                    Adjudication(
                        document=document,
                        project=self.project,
                        label_keys=list(dict.fromkeys(row.labels)),
                        answers_seen={a.reviewer or "": a.labels for a in carried},
                        decided_by=self.batch.created_by,
                        note="imported: the file's final label",
                    )
                )
        annotations = Annotation.objects.bulk_create([annotation for _, annotation, _ in answers])
        links, revisions, dated = [], [], []
        for annotation, (_, _, answer) in zip(annotations, answers, strict=True):
            keys = list(dict.fromkeys(answer.labels))
            links.extend(AnnotationLabel(annotation=annotation, label=self.labels[key]) for key in keys)
            revisions.append(
                AnnotationRevision(
                    annotation=annotation,
                    label_keys=keys,
                    label_ids=[self.labels[key].pk for key in keys],
                    changed_by=self.batch.created_by,
                    reason="import",
                )
            )
            if answer.created_at or answer.updated_at:
                # bulk_create stamps "now"; the file's own times are set after it (bulk_update leaves them be).
                annotation.created_at = answer.created_at or answer.updated_at
                annotation.updated_at = answer.updated_at or answer.created_at
                dated.append(annotation)
        AnnotationLabel.objects.bulk_create(links)
        AnnotationRevision.objects.bulk_create(revisions)
        if dated:
            Annotation.objects.bulk_update(dated, ["created_at", "updated_at"])
        Adjudication.objects.bulk_create(adjudications)
        self.batch.annotation_count += len(annotations)

    def finish(self) -> None:
        self.flush()
        self.settle()
        if self.errors:
            ImportRowError.objects.bulk_create(self.errors)
            self.errors = []


def _answers_to_store(answers: list[RowAnnotation], members: dict[str, int]) -> list[RowAnnotation]:
    """One answer per member named in the file (their latest), and at most one without a reviewer (an earlier
    import's); answers by people who are not members here, and empty ones, are not stored."""
    by_reviewer: dict[str | None, RowAnnotation] = {}
    for answer in answers:
        if not answer.labels or (answer.reviewer is not None and answer.reviewer not in members):
            continue
        if answer.reviewer is None:
            by_reviewer.setdefault(None, replace(answer, source=Annotation.Source.IMPORT))
        else:
            by_reviewer[answer.reviewer] = answer
    return list(by_reviewer.values())


# --- Use case -----------------------------------------------------------------------------------------------


def import_batch_create(
    *, project: Project, file_name: str, options: ImportOptions, user=None, stored_path: str = "", head: bytes = b""
) -> ImportBatch:
    """Record an import before it runs, so a queued upload is visible and its outcome has a home.

    `head`, the file's first bytes, lets the format be told from the content (see `detect_format`)."""
    fmt = detect_format(file_name, options.format, head)
    batch = ImportBatch(
        project=project,
        created_by=user if user is not None and user.is_authenticated else None,
        file_name=Path(file_name).name[:255],
        stored_path=stored_path,
        format=fmt,
        options=options.to_dict(),
    )
    batch.full_clean()
    batch.save()
    return batch


def import_batch_run(*, batch: ImportBatch, stream: IO[bytes], progress: ProgressCallback | None = None) -> ImportBatch:
    """Read `stream` into the batch's project. Rows go in one transaction: a refused file leaves nothing behind.

    `progress` is called with the number of bytes consumed so far (for a progress bar).
    """
    options = ImportOptions(**batch.options, format=batch.format)
    batch.status = ImportBatch.Status.RUNNING
    batch.heartbeat_at = timezone.now()
    batch.save(update_fields=["status", "heartbeat_at"])
    text = _LineCountingText(io.BufferedReader(_ByteCounter(stream, progress), buffer_size=1 << 16))
    builder = _Builder(batch, settings.DOCKET_IMPORT_CHUNK)
    batch_id = batch.pk
    try:
        # The rows go in one long transaction; the heartbeat, on its own connection, tells the sweeper that
        # this process is alive (a killed one's transaction is rolled back and its batch is failed).
        with Heartbeat(lambda: _import_heartbeat(batch_id), name=f"heartbeat-import-{batch_id}"), transaction.atomic():
            # Imported labels are answers too: the taxonomy may not change under them until they commit.
            taxonomy_hold(batch.project)
            builder.labels = builder.current_labels()
            # Parquet and zipped datasets are read from the (seekable) file itself, the rest line by line.
            source = stream if batch.format in BINARY_FORMATS else text
            try:
                for row in PARSERS[batch.format](source, options):
                    builder.add(row)
                builder.finish()
            finally:
                builder.close()
            if batch.rows_seen == 0:
                raise ImportRejected("The file holds no documents; nothing was imported.")
            if batch.created_count == 0 and batch.duplicate_count == 0 and batch.rejected_count == batch.rows_seen:
                raise ImportRejected(
                    f"None of the {batch.rows_seen:,} rows could be imported (first problem: line "
                    f"{_first_error(builder)}); nothing was imported."
                )
            batch.status = ImportBatch.Status.COMPLETED
            batch.finished_at = timezone.now()
            batch.save()
            audit_record(
                action="import.completed",
                actor=batch.created_by,
                project=batch.project,
                target=batch,
                after=_summary(batch),
            )
            if batch.created_count:
                transaction.on_commit(search_vectors_request)
            if batch.annotation_count:
                # Imported labels count like reviewers' labels: the learning loop trains when they are enough
                # (and lays out the queue either way).
                project_id = batch.project_id
                transaction.on_commit(lambda: notify_learning(project_id))
            elif batch.created_count:
                project_id = batch.project_id
                transaction.on_commit(lambda: request_queue_rescore(project_id))
    except ImportRejected as error:
        import_batch_fail(batch=batch, reason=str(error), first_errors=builder.first_errors)
        raise
    except (OperationalError, InterfaceError) as error:
        # The database dropped the connection mid-way: the rows were rolled back with it. Say so on a fresh one.
        connection.close()
        try:
            import_batch_fail(
                batch=batch, reason=f"The import stopped: the database connection was lost ({error}). {RERUN}"
            )
        except DatabaseError:
            logger.exception("Could not mark import %s failed; the sweeper will", batch.pk)
        raise
    except Exception as error:
        # A bug or an outage, not the file's fault: the rows rolled back with the transaction, and the batch must
        # not stay "running" for ever. It says where it stopped and can be run again; the error goes on up.
        logger.exception("Import batch %s stopped on an unexpected error", batch.pk)
        import_batch_fail(
            batch=batch,
            reason=(
                f"The import stopped on an unexpected error near line {text.lines_read} "
                f"({type(error).__name__}); nothing was imported. Run it again, or tell your Docket operator "
                f"if it fails again."
            ),
            first_errors=builder.first_errors,
        )
        raise
    return batch


# What a failed import tells the person who started it.
RERUN = "Nothing from this file was stored; run the import again."


def search_vectors_request() -> None:
    """Ask a worker to store the new documents' search vectors; until it has, Explore matches them on their text.
    A broker outage is logged: the periodic run (config/celery.py) stores them within a minute or so anyway."""
    if connection.vendor != "postgresql":
        return  # no text search on SQLite
    from annotation.tasks import fill_search_vectors_task  # the task module imports this one

    try:
        fill_search_vectors_task.delay()
    except Exception:  # the documents are committed; only their vectors wait
        logger.exception("Could not ask a worker to store search vectors")


def _import_heartbeat(batch_id: int) -> None:
    ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.RUNNING).update(heartbeat_at=timezone.now())


def import_batches_fail_dead(*, now=None) -> int:
    """Fail running imports whose process stopped sending heartbeats (killed, or its machine went away).

    Their transaction died with them, so nothing of the file was stored and the import can simply be run
    again. Called by the sweeper every few seconds; returns how many were failed.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=stale_seconds())
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    count = 0
    for batch in ImportBatch.objects.filter(silent, status=ImportBatch.Status.RUNNING).select_related("project"):
        seen = f"{batch.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if batch.heartbeat_at else "unknown"
        message = f"The import stopped part-way: its process was stopped or killed (last sign of life {seen}). {RERUN}"
        with transaction.atomic():
            # One conditional update: a live import that holds the database (SQLite) or finishes meanwhile
            # no longer matches, so it is never failed under a worker that is still on it.
            ended = ImportBatch.objects.filter(silent, pk=batch.pk, status=ImportBatch.Status.RUNNING).update(
                status=ImportBatch.Status.FAILED,
                error=message,
                finished_at=now,
                rows_seen=0,
                created_count=0,
                duplicate_count=0,
                rejected_count=0,
                annotation_count=0,
            )
            if ended:
                audit_record(
                    action="import.failed",
                    actor=None,
                    actor_label="sweeper",
                    project=batch.project,
                    target=batch,
                    after={"error": message},
                )
                count += 1
    return count


def documents_import(
    *,
    project: Project,
    path: str | os.PathLike,
    options: ImportOptions | None = None,
    user=None,
    progress: ProgressCallback | None = None,
) -> ImportBatch:
    """Import a file from disk (the management command and the worker use this)."""
    options = options or ImportOptions()
    batch = import_batch_create(
        project=project, file_name=os.fspath(path), options=options, user=user, head=file_head(path)
    )
    with open(path, "rb") as stream:
        return import_batch_run(batch=batch, stream=stream, progress=progress)


def import_batch_run_stored(batch_id: int) -> ImportBatch:
    """Run an uploaded file that waits in artifact storage (called by the worker); idempotent."""
    batch = ImportBatch.objects.select_related("project", "created_by").get(pk=batch_id)
    if batch.status in (ImportBatch.Status.COMPLETED, ImportBatch.Status.FAILED):
        return batch
    if batch.status == ImportBatch.Status.RUNNING:
        cutoff = timezone.now() - timedelta(seconds=stale_seconds())
        if batch.heartbeat_at is not None and batch.heartbeat_at >= cutoff:
            return batch  # the broker handed this task out again while its first worker is still on it
        # A previous attempt died mid-way; its transaction rolled back, so start again from a clean count.
        _reset_counts(batch)
    path = Path(batch.stored_path)
    if not path.exists():
        import_batch_fail(batch=batch, reason="The uploaded file is no longer in storage; upload it again.")
        return batch
    try:
        with open(path, "rb") as stream:
            import_batch_run(batch=batch, stream=stream)
    except ImportRejected:
        pass  # the batch records why
    if batch.status == ImportBatch.Status.COMPLETED:
        path.unlink(missing_ok=True)  # a failed import keeps its file, so that it can be run again
    return batch


def import_batch_fail(*, batch: ImportBatch, reason: str, first_errors: Iterable[tuple[int, str]] = ()) -> ImportBatch:
    """Mark the batch failed with `reason` (shown on its page); its rows were rolled back, but the first row
    problems stay visible. For refused files, imports that stopped on an error, and imports whose process died."""
    with transaction.atomic():
        _reset_counts(batch)
        batch.status = ImportBatch.Status.FAILED
        batch.error = reason
        batch.finished_at = timezone.now()
        batch.save(
            update_fields=[
                "status",
                "error",
                "finished_at",
                "rows_seen",
                "created_count",
                "duplicate_count",
                "rejected_count",
                "annotation_count",
            ]
        )
        batch.row_errors.all().delete()
        ImportRowError.objects.bulk_create(ImportRowError(batch=batch, line=line, reason=r) for line, r in first_errors)
        audit_record(
            action="import.failed", actor=batch.created_by, project=batch.project, target=batch, after={"error": reason}
        )
    return batch


def import_batch_rerun(*, batch: ImportBatch, actor) -> ImportBatch:
    """Queue a failed upload again from its stored file; the worker runs it as if it were new."""
    # annotation.tasks imports this module, so the task is looked up here, when a rerun is asked for.
    from annotation.tasks import import_documents_task

    with transaction.atomic():
        batch = ImportBatch.objects.select_for_update().select_related("project").get(pk=batch.pk)
        if batch.status != ImportBatch.Status.FAILED:
            raise ImportRejected(f"Only a failed import can be run again; this one is {batch.get_status_display()}.")
        if not batch.rerunnable:
            raise ImportRejected("The uploaded file is no longer in storage; upload it again.")
        previous_error = batch.error
        _reset_counts(batch)
        batch.status = ImportBatch.Status.QUEUED
        batch.error = ""
        batch.finished_at = None
        batch.save()
        batch.row_errors.all().delete()
        audit_record(
            action="import.rerun", actor=actor, project=batch.project, target=batch, before={"error": previous_error}
        )
        batch_id = batch.pk
        transaction.on_commit(lambda: import_documents_task.delay(batch_id))
    return batch


def upload_store(*, project: Project, uploaded) -> str:
    """Copy an uploaded file into artifact storage where any worker can read it; returns its path."""
    directory = Path(settings.ARTIFACT_DIR) / "uploads" / str(project.pk)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{timezone.now():%Y%m%dT%H%M%S%f}-{Path(uploaded.name).name}"
    with open(target, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return str(target)


class _ByteCounter(io.RawIOBase):
    def __init__(self, raw: IO[bytes], progress: ProgressCallback | None):
        self._raw = raw
        self._progress = progress
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.consumed += n
        if self._progress and n:
            self._progress(self.consumed)
        return n


def _summary(batch: ImportBatch) -> dict[str, Any]:
    return {
        "file": batch.file_name,
        "rows": batch.rows_seen,
        "created": batch.created_count,
        "duplicates": batch.duplicate_count,
        "rejected": batch.rejected_count,
        "annotations": batch.annotation_count,
    }


def _first_error(builder: _Builder) -> str:
    line, reason = builder.first_errors[0]
    return f"{line}: {reason}"


def _reset_counts(batch: ImportBatch) -> None:
    batch.rows_seen = batch.created_count = batch.duplicate_count = 0
    batch.rejected_count = batch.annotation_count = 0


def import_upload(*, project: Project, uploaded, options: ImportOptions, user=None) -> ImportBatch:
    """An uploaded file, stored where any worker can read it, recorded as a queued batch and handed to the
    worker once committed. The Manage pages and the Django admin both upload through here."""
    # Imported here: the task module imports this one.
    from annotation.tasks import import_documents_task

    head = uploaded.read(SNIFF_BYTES)
    uploaded.seek(0)
    detect_format(uploaded.name, options.format, head)  # refuse an unknown format before storing anything
    stored = upload_store(project=project, uploaded=uploaded)
    try:
        with transaction.atomic():
            batch = import_batch_create(
                project=project, file_name=uploaded.name, options=options, user=user, stored_path=stored, head=head
            )
            transaction.on_commit(lambda: import_documents_task.delay(batch.pk))
    except Exception:
        Path(stored).unlink(missing_ok=True)
        raise
    return batch
