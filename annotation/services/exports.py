"""Streams a project's documents with their labels, annotations and the active model's predictions.

The output re-imports unchanged: `id`, `text`, `labels` and `metadata` are what an import reads, and the
fields that describe Docket's state (`docket_id`, `status`, `annotations`, `prediction`) are ignored by it.
Besides Docket's JSONL and CSV, the same records are written in the shapes Label Studio, doccano, Prodigy and
Hugging Face `datasets` read (docs/import-export.md says what each carries).
"""

import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr

from django.core.serializers.json import DjangoJSONEncoder

from annotation import selectors
from annotation.models import Document, Label, Project
from annotation.services.audit import audit_record
from annotation.services.taxonomy import CurrentLabels, current_labels
from annotation.spreadsheet_cells import csv_dict_writer
from learning.selectors import predictions_for
from webhooks.events import event_emit


@dataclass(frozen=True)
class ExportFormat:
    content_type: str
    extension: str
    binary: bool = False


FORMATS = {
    "jsonl": ExportFormat("application/x-ndjson", "jsonl"),
    "csv": ExportFormat("text/csv", "csv"),
    "label-studio": ExportFormat("application/json", "label-studio.json"),
    "doccano": ExportFormat("application/x-ndjson", "doccano.jsonl"),
    "prodigy": ExportFormat("application/x-ndjson", "prodigy.jsonl"),
    "parquet": ExportFormat("application/vnd.apache.parquet", "parquet", binary=True),
    "hf-dataset": ExportFormat("application/zip", "dataset.zip", binary=True),
}
EXPORT_FORMATS = tuple(FORMATS)
CSV_COLUMNS = ["id", "text", "labels", "metadata", "status", "docket_id", "annotations", "prediction"]
CHUNK = 1000


def export_records(project: Project, *, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """One dict per document, in id order, read in keyset-paginated chunks so memory stays flat."""
    last_id = 0
    mappings: dict[int | None, CurrentLabels] = {}  # one per taxonomy version a scoring model was trained on
    while True:
        documents = list(
            Document.objects.filter(project=project, pk__gt=last_id)
            .order_by("pk")
            .values("pk", "external_id", "text", "metadata", "status")[:chunk]
        )
        if not documents:
            return
        ids = [d["pk"] for d in documents]
        annotations = selectors.annotations_by_document(ids)
        finals = selectors.final_labels_for(ids)
        predictions = {
            pk: _in_current_taxonomy(project, prediction, mappings) for pk, prediction in predictions_for(ids).items()
        }
        for d in documents:
            doc_annotations = annotations.get(d["pk"], [])
            record = {
                "id": d["external_id"],
                "text": d["text"],
                "labels": finals[d["pk"]].labels,
                "metadata": d["metadata"],
                "status": d["status"],
                "docket_id": d["pk"],
                "annotations": [
                    {
                        "reviewer": a["reviewer"],
                        "source": a["source"],
                        "labels": a["labels"],
                        "created_at": a["created_at"],
                        "updated_at": a["updated_at"],
                    }
                    for a in doc_annotations
                ],
            }
            if d["pk"] in predictions:
                record["prediction"] = predictions[d["pk"]]
            yield record
        last_id = ids[-1]


def _in_current_taxonomy(
    project: Project, prediction: dict[str, Any], mappings: dict[int | None, CurrentLabels]
) -> dict[str, Any]:
    """A stored prediction expressed in today's labels, saying which taxonomy the model saw and which it is in."""
    raw = prediction["probabilities"] or {}
    trained_on = prediction["taxonomy_version"]
    known = mappings.get(trained_on)
    if known is None or set(raw) - set(known.mapping):  # a key this mapping has not led through yet
        seen = set(known.mapping) if known else set()
        known = current_labels(
            project,
            model_taxonomy_version=trained_on,
            keys=seen | set(raw),
            current_version=prediction["current_taxonomy_version"],
        )
        mappings[trained_on] = known
    mapping = known
    return {
        "model_version": prediction["model_version"],
        "model_taxonomy_version": trained_on,
        "taxonomy_version": mapping.taxonomy_version,
        "probabilities": mapping.probabilities(raw, multi_label=project.multi_label),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, cls=DjangoJSONEncoder)


def export_jsonl(project: Project) -> Iterator[str]:
    for record in export_records(project):
        yield _dumps(record) + "\n"


def export_csv(project: Project) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv_dict_writer(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for record in export_records(project):
        writer.writerow(
            {
                **record,
                "labels": "|".join(record["labels"]),
                "metadata": _dumps(record["metadata"]) if record["metadata"] else "",
                "annotations": _dumps(record["annotations"]),
                "prediction": _dumps(record["prediction"]) if "prediction" in record else "",
            }
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def export_stream(project: Project, fmt: str) -> Iterator[str] | Iterator[bytes]:
    """The export in `fmt`: text pieces for the JSON and CSV formats, bytes for Parquet and the zipped dataset."""
    writers = {
        "jsonl": export_jsonl,
        "csv": export_csv,
        "label-studio": export_label_studio,
        "doccano": export_doccano,
        "prodigy": export_prodigy,
        "parquet": export_parquet_bytes,
        "hf-dataset": export_dataset_zip_bytes,
    }
    if fmt not in writers:
        raise ValueError(f"Unknown export format '{fmt}'; use one of {', '.join(EXPORT_FORMATS)}.")
    return writers[fmt](project)


def export_file_name(project: Project, fmt: str) -> str:
    return f"project-{project.pk}.{FORMATS[fmt].extension}"


def export_content_type(fmt: str) -> str:
    spec = FORMATS[fmt]
    return spec.content_type if spec.binary else f"{spec.content_type}; charset=utf-8"


# --- Label Studio -------------------------------------------------------------------------------------------


def project_labels(project: Project) -> list[Label]:
    """Every label of the project in taxonomy order: the choices a labeling tool offers, the ClassLabel names."""
    return list(Label.objects.filter(taxonomy__project=project).order_by("order", "id"))


def label_studio_config(project: Project) -> str:
    """A Label Studio labeling config for the project: the text and one Choices control with its labels."""
    choice = "multiple" if project.multi_label else "single"
    choices = "\n".join(
        f"    <Choice value={quoteattr(label.key)} alias={quoteattr(label.key)} hint={quoteattr(label.name)}/>"
        for label in project_labels(project)
    )
    return (
        "<View>\n"
        '  <Text name="text" value="$text"/>\n'
        f'  <Choices name="label" toName="text" choice="{choice}" showInLine="false">\n{choices}\n  </Choices>\n'
        "</View>\n"
    )


def _choices_result(keys: list[str], score: float | None = None) -> list[dict[str, Any]]:
    if not keys:
        return []
    region: dict[str, Any] = {
        "from_name": "label",
        "to_name": "text",
        "type": "choices",
        "value": {"choices": list(keys)},
    }
    if score is not None:
        region["score"] = score
    return [region]


def _predicted_keys(probabilities: dict[str, float], *, multi_label: bool) -> list[str]:
    if not probabilities:
        return []
    if multi_label:
        return [key for key, p in probabilities.items() if p >= 0.5]
    return [max(probabilities, key=probabilities.get)]


def label_studio_task(record: dict[str, Any], *, multi_label: bool) -> dict[str, Any]:
    """One Docket record as a Label Studio task: the document in `data`, every annotation with who and when,
    the active model's prediction with its score and version, and Docket's own state under `meta.docket`."""
    annotations = []
    for a in record["annotations"]:
        annotation = {
            "result": _choices_result(a["labels"]),
            "created_at": a["created_at"],
            "updated_at": a["updated_at"],
            "was_cancelled": False,
            "ground_truth": False,
            "docket_source": a["source"],
        }
        if a["reviewer"]:
            # Not `completed_by`: Label Studio takes that only as the number of one of its own members and
            # refuses the whole import otherwise; without it the annotation is the importing person's there.
            annotation["created_username"] = a["reviewer"]
        annotations.append(annotation)
    task = {
        # Label Studio's own exports number every task; its converter needs the number. An import ignores it.
        "id": record["docket_id"],
        "data": {"text": record["text"], "id": record["id"], "docket_id": record["docket_id"]},
        "annotations": annotations,
        "predictions": [],
        "meta": {"docket": {"labels": record["labels"], "status": record["status"]}},
    }
    if record["metadata"]:
        task["data"]["metadata"] = record["metadata"]
    prediction = record.get("prediction")
    if prediction:
        probabilities = prediction["probabilities"]
        keys = _predicted_keys(probabilities, multi_label=multi_label)
        score = max((probabilities[key] for key in keys), default=0.0)
        task["predictions"].append(
            {"model_version": str(prediction["model_version"]), "score": score, "result": _choices_result(keys, score)}
        )
        task["meta"]["docket"]["prediction"] = prediction
    return task


def export_label_studio(project: Project) -> Iterator[str]:
    """A JSON array of tasks, one task a line, as Label Studio's import takes it."""
    yield "["
    separator = "\n"
    for record in export_records(project):
        yield separator + _dumps(label_studio_task(record, multi_label=project.multi_label))
        separator = ",\n"
    yield "\n]\n"


# --- doccano and Prodigy ------------------------------------------------------------------------------------

# Keys a doccano line uses itself; metadata with one of these names goes under "metadata" instead.
DOCCANO_RESERVED = frozenset({"text", "label", "labels", "id", "metadata", "docket_id", "status", "annotations"})


def doccano_line(record: dict[str, Any]) -> dict[str, Any]:
    """doccano's text classification JSONL: `text`, a `label` list; metadata as extra keys (doccano's meta)."""
    line: dict[str, Any] = {"text": record["text"], "label": record["labels"]}
    if record["id"]:
        line["id"] = record["id"]
    line["docket_id"] = record["docket_id"]
    metadata = record["metadata"] or {}
    if DOCCANO_RESERVED & metadata.keys():
        line["metadata"] = metadata
    else:
        line.update(metadata)
    return line


def export_doccano(project: Project) -> Iterator[str]:
    for record in export_records(project):
        yield _dumps(doccano_line(record)) + "\n"


def _prodigy_hash(*parts: Any) -> int:
    # Prodigy's hashes are signed 32-bit integers; these are stable digests of the same inputs.
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def prodigy_line(record: dict[str, Any], options: list[dict[str, str]], *, multi_label: bool) -> dict[str, Any]:
    """Prodigy's textcat choice task: the options, the accepted ones, the answer and the hashes."""
    input_hash = _prodigy_hash({"text": record["text"]})
    line: dict[str, Any] = {
        "text": record["text"],
        "options": options,
        "_input_hash": input_hash,
        "_task_hash": _prodigy_hash(input_hash, options),
        "_view_id": "choice",
        "config": {"choice_style": "multiple" if multi_label else "single"},
        "meta": record["metadata"] or {},
    }
    if record["id"]:
        line["id"] = record["id"]
    line["docket_id"] = record["docket_id"]
    if record["labels"]:
        line["accept"] = record["labels"]
        line["answer"] = "accept"
        reviewers = [a for a in record["annotations"] if a["reviewer"]]
        if len(reviewers) == 1:  # a Prodigy line is one person's answer
            line["_annotator_id"] = reviewers[0]["reviewer"]
            line["_timestamp"] = int(reviewers[0]["updated_at"].timestamp())
    return line


def export_prodigy(project: Project) -> Iterator[str]:
    options = [{"id": label.key, "text": label.name} for label in project_labels(project)]
    for record in export_records(project):
        yield _dumps(prodigy_line(record, options, multi_label=project.multi_label)) + "\n"


# --- Hugging Face datasets ----------------------------------------------------------------------------------

PARQUET_ROWS_PER_GROUP = 10_000


def dataset_features(project: Project):
    """The `datasets` features of an export: `label` (ClassLabel) in single-label projects, `labels`
    (Sequence of ClassLabel) in multi-label ones; metadata and the prediction as JSON text."""
    from datasets import ClassLabel, Features, Sequence, Value  # heavy; only exports to datasets need it

    names = [label.key for label in project_labels(project)]
    label_feature = (
        {"labels": Sequence(ClassLabel(names=names))} if project.multi_label else {"label": ClassLabel(names=names)}
    )
    when = Value("timestamp[us, tz=UTC]")
    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            **label_feature,
            "metadata": Value("string"),
            "status": Value("string"),
            "docket_id": Value("int64"),
            "annotations": [
                {
                    "reviewer": Value("string"),
                    "source": Value("string"),
                    "labels": [Value("string")],
                    "created_at": when,
                    "updated_at": when,
                }
            ],
            "prediction": Value("string"),
        }
    )


def _dataset_row(record: dict[str, Any], index: dict[str, int], multi_label: bool) -> dict[str, Any]:
    labels = [index[key] for key in record["labels"] if key in index]
    row = {
        "id": record["id"],
        "text": record["text"],
        "metadata": _dumps(record["metadata"]) if record["metadata"] else None,
        "status": record["status"],
        "docket_id": record["docket_id"],
        "annotations": [
            {key: a[key] for key in ("reviewer", "source", "labels", "created_at", "updated_at")}
            for a in record["annotations"]
        ],
        "prediction": _dumps(record["prediction"]) if record.get("prediction") else None,
    }
    if multi_label:
        row["labels"] = labels
    else:
        row["label"] = labels[0] if labels else -1  # ClassLabel's "no label"
    return row


def export_parquet(project: Project, target: str | Path | IO[bytes]) -> int:
    """Write the project as Parquet with the features `datasets` reads back, a row group at a time; returns
    the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    features = dataset_features(project)
    schema = features.arrow_schema
    index = {name: i for i, name in enumerate(project_labels_names(features, project))}
    count = 0
    with pq.ParquetWriter(target, schema) as writer:
        rows: list[dict[str, Any]] = []
        for record in export_records(project):
            rows.append(_dataset_row(record, index, project.multi_label))
            if len(rows) >= PARQUET_ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(rows, schema=schema))
                count += len(rows)
                rows = []
        if rows or count == 0:
            writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            count += len(rows)
    return count


def project_labels_names(features, project: Project) -> list[str]:
    feature = features["labels" if project.multi_label else "label"]
    return list(getattr(feature, "feature", feature).names)


def export_dataset_directory(project: Project, directory: str | Path) -> int:
    """Write the project with `Dataset.save_to_disk`, by way of a Parquet file `datasets` memory-maps, so
    memory stays flat; returns the number of rows."""
    from datasets import Dataset

    with tempfile.TemporaryDirectory(prefix="docket-export-") as work:
        parquet = Path(work) / "export.parquet"
        count = export_parquet(project, parquet)
        dataset = Dataset.from_parquet(
            str(parquet), features=dataset_features(project), cache_dir=str(Path(work) / "cache")
        )
        dataset.save_to_disk(str(directory))
    return count


def _spooled(write) -> Iterator[bytes]:
    """Run `write(file)` into a temporary file, then stream the file in chunks and delete it."""
    with tempfile.TemporaryFile(prefix="docket-export-") as spool:
        write(spool)
        spool.seek(0)
        while chunk := spool.read(1 << 20):
            yield chunk


def export_parquet_bytes(project: Project) -> Iterator[bytes]:
    return _spooled(lambda spool: export_parquet(project, spool))


def export_dataset_zip(project: Project, target: IO[bytes]) -> int:
    """The dataset directory as a zip archive (what an upload or a download carries)."""
    with tempfile.TemporaryDirectory(prefix="docket-export-") as work:
        directory = Path(work) / f"project-{project.pk}"
        count = export_dataset_directory(project, directory)
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(directory.parent))
        shutil.rmtree(directory, ignore_errors=True)
    return count


def export_dataset_zip_bytes(project: Project) -> Iterator[bytes]:
    return _spooled(lambda spool: export_dataset_zip(project, spool))


def documents_export(*, project: Project, fmt: str, actor=None) -> Iterator[str] | Iterator[bytes]:
    """The export a person or system downloads (Manage page, Django admin, API): recorded as it starts, then
    streamed."""
    stream = export_stream(project, fmt)
    export_record(project=project, fmt=fmt, actor=actor)
    return stream


def export_record(*, project: Project, fmt: str, actor=None, documents: int | None = None) -> None:
    """An export happened: in the audit log, and told to the project's webhooks (`labels.exported`)."""
    after: dict[str, Any] = {"format": fmt}
    if documents is not None:
        after["documents"] = documents
    audit_record(action="export.documents", actor=actor, project=project, after=after)
    who = actor.get_username() if actor is not None and actor.is_authenticated else None
    event_emit(project_id=project.pk, event="labels.exported", data={**after, "by": who})
