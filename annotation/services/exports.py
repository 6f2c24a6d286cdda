"""Streams a project's documents with their labels, annotations and the active model's predictions.

The output re-imports unchanged: `id`, `text`, `labels` and `metadata` are what an import reads, and the
fields that describe Docket's state (`docket_id`, `status`, `annotations`, `prediction`) are ignored by it.
"""

import io
import json
from collections.abc import Iterator
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from annotation import selectors
from annotation.models import Document, Project
from annotation.services.audit import audit_record
from annotation.services.taxonomy import CurrentLabels, current_labels
from annotation.spreadsheet_cells import csv_dict_writer
from learning.selectors import predictions_for

EXPORT_FORMATS = ("jsonl", "csv")
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


def export_stream(project: Project, fmt: str) -> Iterator[str]:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format '{fmt}'; use one of {', '.join(EXPORT_FORMATS)}.")
    return export_jsonl(project) if fmt == "jsonl" else export_csv(project)


def documents_export(*, project: Project, fmt: str, actor=None) -> Iterator[str]:
    """The export a person downloads (Manage page, Django admin): audited as it starts, then streamed."""
    stream = export_stream(project, fmt)
    audit_record(action="export.documents", actor=actor, project=project, after={"format": fmt})
    return stream
