"""Exports stream every document with labels and annotations, and re-import unchanged."""

import csv
import io
import json

import pytest
from django.core.management import call_command

from annotation.models import Document
from annotation.services.exports import export_stream
from annotation.services.imports import ImportOptions, import_batch_create, import_batch_run
from learning.models import QueuePriority
from tests.factories import project_with_labels

pytestmark = pytest.mark.django_db

SOURCE = [
    {
        "id": "p-1",
        "text": "We share purchase history with payment processors.",
        "labels": ["third_party"],
        "product": "Pay",
    },
    {
        "id": "p-2",
        "text": "Logs are kept for 30 days, then deleted.\nSecond line.",
        "labels": ["first_party", "data_security"],
    },
    {"id": "", "text": 'Unlabelled clause with "quotes", commas, and émojis 🙂.', "metadata": {"region": "EU", "n": 3}},
]


def import_rows(project, rows, fmt="jsonl"):
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) if fmt == "jsonl" else rows
    batch = import_batch_create(project=project, file_name=f"in.{fmt}", options=ImportOptions())
    return import_batch_run(batch=batch, stream=io.BytesIO(content.encode("utf-8")))


def comparable(project, fmt):
    text = "".join(export_stream(project, fmt))
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        return sorted((r["id"], r["text"], r["labels"], json.dumps(r["metadata"], sort_keys=True)) for r in records)
    rows = list(csv.DictReader(io.StringIO(text)))
    return sorted((r["id"], r["text"], r["labels"].split("|") if r["labels"] else [], r["metadata"]) for r in rows)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_export_reimports_into_a_new_project_unchanged(fmt):
    first = project_with_labels(multi_label=True, name=f"Source {fmt}")
    import_rows(first, SOURCE)
    exported = "".join(export_stream(first, fmt))

    second = project_with_labels(multi_label=True, name=f"Copy {fmt}")
    batch = import_batch_create(project=second, file_name=f"export.{fmt}", options=ImportOptions())
    batch = import_batch_run(batch=batch, stream=io.BytesIO(exported.encode("utf-8")))

    assert (batch.created_count, batch.rejected_count) == (3, 0)
    assert comparable(second, fmt) == comparable(first, fmt)
    assert Document.objects.filter(project=second, status="labeled").count() == 2


def test_jsonl_export_carries_annotations_status_and_predictions():
    project = project_with_labels(multi_label=True)
    import_rows(project, SOURCE[:1])
    document = Document.objects.get(project=project)
    QueuePriority.objects.create(
        document=document, project=project, score=0.4, model_version=3, probabilities={"third_party": 0.9}
    )
    (record,) = [json.loads(line) for line in "".join(export_stream(project, "jsonl")).splitlines()]
    assert record["status"] == "labeled"
    assert record["annotations"][0]["source"] == "import"
    assert record["annotations"][0]["labels"] == ["third_party"]
    assert record["prediction"] == {
        "model_version": 3,
        "model_taxonomy_version": None,  # no such model version on record: its keys are read as today's
        "taxonomy_version": project.taxonomy.version,
        "probabilities": {"third_party": 0.9},
    }
    assert record["metadata"] == {"product": "Pay"}


def test_export_command_writes_a_file(tmp_path):
    project = project_with_labels(multi_label=True)
    import_rows(project, SOURCE)
    out = tmp_path / "out.csv"
    call_command("export_documents", str(project.pk), "--format", "csv", "--output", str(out))
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 3
    assert {r["id"] for r in rows} == {"p-1", "p-2", ""}


def test_after_a_merge_exported_predictions_carry_only_current_labels_with_both_versions():
    from annotation.services import taxonomy
    from learning.models import ModelVersion

    project = project_with_labels()
    import_rows(project, [{"id": "q-1", "text": "We tell advertisers what you bought."}])
    document = Document.objects.get(project=project)
    trained_on = project.taxonomy.version
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="active",
        kind="fast",
        taxonomy_version=trained_on,
        label_keys=["first_party", "third_party", "data_security"],
        artifact_path="m/1",
    )
    QueuePriority.objects.create(
        document=document,
        project=project,
        score=0.4,
        model_version=1,
        probabilities={"first_party": 0.2, "third_party": 0.7, "data_security": 0.1},
    )
    taxonomy.labels_merge(project=project, actor=None, source_keys=["third_party"], target_key="first_party")
    (record,) = [json.loads(line) for line in "".join(export_stream(project, "jsonl")).splitlines()]
    project.taxonomy.refresh_from_db()
    prediction = record["prediction"]
    assert prediction["model_taxonomy_version"] == trained_on
    assert prediction["taxonomy_version"] == project.taxonomy.version > trained_on
    assert set(prediction["probabilities"]) == {"first_party", "data_security"}
    assert prediction["probabilities"]["first_party"] == pytest.approx(0.9)
