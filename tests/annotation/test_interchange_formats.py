"""Label Studio, doccano, Prodigy and Hugging Face files: Docket -> each format -> a fresh project loses
nothing the format carries (documents, final labels, reviewers, their times, metadata)."""

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from annotation import selectors
from annotation.exceptions import ImportRejected
from annotation.models import Adjudication, Annotation, AnnotationLabel, Document, Label
from annotation.services.exports import export_stream, label_studio_config
from annotation.services.imports import ImportOptions, detect_format, import_batch_create, import_batch_run
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

# Formats that carry each reviewer's answer and its times; doccano and Prodigy carry the final labels only
# (Prodigy also the one reviewer of a document that had one).
CARRY_REVIEWERS = {"label-studio", "parquet", "hf-dataset"}
FORMATS = ["label-studio", "doccano", "prodigy", "parquet", "hf-dataset"]
MONDAY = datetime(2026, 11, 23, 9, 30, 15, 250000, tzinfo=UTC)
TUESDAY = datetime(2026, 11, 24, 16, 5, 0, tzinfo=UTC)


def answer(document, reviewer, keys, *, created=MONDAY, updated=TUESDAY, source="reviewer"):
    annotation = Annotation.objects.create(document=document, reviewer=reviewer, source=source)
    labels = Label.objects.filter(taxonomy__project=document.project, key__in=keys)
    AnnotationLabel.objects.bulk_create(AnnotationLabel(annotation=annotation, label=label) for label in labels)
    Annotation.objects.filter(pk=annotation.pk).update(created_at=created, updated_at=updated)
    return annotation


def labelled_project(*, multi_label, reviewers, name):
    project = project_with_labels(multi_label=multi_label, name=name)
    for user in reviewers:
        MembershipFactory(project=project, user=user)
    ana, ben = reviewers
    agreed = DocumentFactory(
        project=project,
        text="We share purchase history with payment processors.",
        external_id="p-1",
        metadata={"product": "Pay", "region": "EU", "pages": [3, 4]},
    )
    answer(agreed, ana, ["third_party"])
    answer(agreed, ben, ["third_party"], created=TUESDAY, updated=TUESDAY)
    decided = DocumentFactory(
        project=project,
        text='Logs are kept for 30 days, "then" deleted.\nSecond line, émoji 🙂.',
        external_id="p-2",
        metadata={"label": "clashes with doccano's own key"},
    )
    answer(decided, ana, ["first_party"])
    answer(decided, ben, ["data_security"])
    Adjudication.objects.create(document=decided, project=project, label_keys=["data_security"], note="lead decided")
    single = DocumentFactory(project=project, text="Only Ana read this retention clause.", external_id="", metadata={})
    answer(single, ana, ["first_party"])
    imported = DocumentFactory(project=project, text="Imported with a label and no reviewer.", external_id="p-4")
    answer(imported, None, ["first_party"], source="import")
    DocumentFactory(project=project, text="Not labelled yet.", external_id="p-5", metadata={"kind": "ticket"})
    return project


def export_bytes(project, fmt):
    pieces = list(export_stream(project, fmt))
    return b"".join(p if isinstance(p, bytes) else p.encode("utf-8") for p in pieces)


def import_bytes(project, content, file_name, fmt=None):
    batch = import_batch_create(
        project=project, file_name=file_name, options=ImportOptions(format=fmt), head=content[:65536]
    )
    return import_batch_run(batch=batch, stream=io.BytesIO(content))


def documents_of(project):
    documents = list(Document.objects.filter(project=project).order_by("text"))
    finals = selectors.final_labels_for(d.pk for d in documents)
    return [(d.external_id, d.text, d.metadata, sorted(finals[d.pk].labels)) for d in documents]


def reviewer_answers(project):
    by_document = selectors.annotations_by_document(
        Document.objects.filter(project=project).values_list("pk", flat=True)
    )
    texts = dict(Document.objects.filter(project=project).values_list("pk", "text"))
    return sorted(
        (texts[pk], a["reviewer"], sorted(a["labels"]), a["created_at"], a["updated_at"])
        for pk, answers in by_document.items()
        for a in answers
        if a["reviewer"]
    )


@pytest.fixture
def reviewers():
    return [UserFactory(username="ana"), UserFactory(username="ben")]


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_keeps_documents_final_labels_and_metadata(fmt, multi_label, reviewers):
    source = labelled_project(multi_label=multi_label, reviewers=reviewers, name=f"Source {fmt} {multi_label}")
    content = export_bytes(source, fmt)
    target = project_with_labels(multi_label=multi_label, name=f"Copy {fmt} {multi_label}")
    for user in reviewers:
        MembershipFactory(project=target, user=user)

    suffix = {"label-studio": "json", "doccano": "jsonl", "prodigy": "jsonl", "parquet": "parquet", "hf-dataset": "zip"}
    batch = import_bytes(target, content, f"export.{suffix[fmt]}")

    assert batch.format == fmt  # told from the content, not named
    assert (batch.created_count, batch.rejected_count) == (5, 0), list(batch.row_errors.values_list("reason"))
    assert documents_of(target) == documents_of(source)
    if fmt in CARRY_REVIEWERS:
        assert reviewer_answers(target) == reviewer_answers(source)


def test_prodigy_carries_the_one_reviewer_of_a_document_to_the_second(reviewers):
    source = labelled_project(multi_label=False, reviewers=reviewers, name="Prodigy source")
    target = project_with_labels(name="Prodigy copy")
    MembershipFactory(project=target, user=reviewers[0])

    import_bytes(target, export_bytes(source, "prodigy"), "export.jsonl")

    carried = reviewer_answers(target)
    assert [(text, who, labels) for text, who, labels, _, _ in carried] == [
        ("Only Ana read this retention clause.", "ana", ["first_party"])
    ]
    assert carried[0][4] == TUESDAY.replace(microsecond=0)  # Prodigy's _timestamp is whole seconds


def test_answers_of_people_who_are_not_members_keep_the_final_label(reviewers):
    source = labelled_project(multi_label=False, reviewers=reviewers, name="Members source")
    target = project_with_labels(name="Nobody is a member here")

    import_bytes(target, export_bytes(source, "label-studio"), "export.json")

    assert reviewer_answers(target) == []
    assert documents_of(target) == documents_of(source)


def test_label_studio_task_carries_who_when_prediction_and_docket_state(reviewers):
    project = labelled_project(multi_label=False, reviewers=reviewers, name="LS shape")
    tasks = json.loads(export_bytes(project, "label-studio"))

    agreed = next(t for t in tasks if t["data"]["id"] == "p-1")
    assert agreed["data"]["metadata"] == {"product": "Pay", "region": "EU", "pages": [3, 4]}
    assert agreed["meta"]["docket"]["labels"] == ["third_party"]
    ana = agreed["annotations"][0]
    assert ana["created_username"] == "ana" and "completed_by" not in ana  # Label Studio's own user numbers
    assert ana["result"] == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["third_party"]}}
    ]
    assert datetime.fromisoformat(ana["created_at"].replace("Z", "+00:00")) == MONDAY
    assert 'name="label" toName="text" choice="single"' in label_studio_config(project)


def test_label_studio_file_without_docket_state_takes_ground_truth_then_agreement():
    project = project_with_labels(name="From Label Studio")
    tasks = [
        {
            "id": 7,
            "data": {"text": "Agreed by both."},
            "annotations": [
                {"result": [{"type": "choices", "value": {"choices": ["first_party"]}}], "completed_by": 1},
                {"result": [{"type": "choices", "value": {"choices": ["first_party"]}}], "completed_by": 2},
            ],
        },
        {
            "id": 8,
            "data": {"text": "Ground truth wins.", "source": "ls"},
            "annotations": [
                {"result": [{"type": "choices", "value": {"choices": ["first_party"]}}], "completed_by": 1},
                {"result": [{"type": "choices", "value": {"choices": ["third_party"]}}], "ground_truth": True},
            ],
        },
        {
            "id": 9,
            "data": {"text": "Cancelled answers do not count."},
            "annotations": [
                {"result": [{"type": "choices", "value": {"choices": ["third_party"]}}], "was_cancelled": True},
            ],
        },
    ]
    pretty = json.dumps(tasks, indent=2).encode()

    batch = import_bytes(project, pretty, "from-label-studio.json")

    assert (batch.format, batch.created_count) == ("label-studio", 3)
    assert documents_of(project) == [
        ("", "Agreed by both.", {"label_studio_id": 7}, ["first_party"]),
        ("", "Cancelled answers do not count.", {"label_studio_id": 9}, []),
        ("", "Ground truth wins.", {"source": "ls", "label_studio_id": 8}, ["third_party"]),
    ]


def test_bad_rows_are_refused_with_their_line_and_the_rest_goes_in():
    project = project_with_labels(name="Bad rows")
    lines = [
        {"text": "Fine clause.", "label": ["first_party"]},
        {"text": "Unknown label.", "label": ["biometrics"]},
        {"label": ["first_party"]},
    ]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()

    batch = import_bytes(project, content, "doccano.jsonl")

    assert (batch.format, batch.created_count, batch.rejected_count) == ("doccano", 1, 2)
    reasons = dict(batch.row_errors.values_list("line", "reason"))
    assert reasons[2].startswith("unknown label 'biometrics'")
    assert reasons[3] == "missing text"


def test_label_studio_array_cut_short_is_refused_whole_with_its_line():
    project = project_with_labels(name="Cut short")
    content = b'[\n{"data": {"text": "One."}},\n{"data": {"text": "Two."'

    with pytest.raises(ImportRejected, match="line 3"):
        import_bytes(project, content, "tasks.json")

    assert not Document.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (b'[{"data": {"text": "x"}}]', "tasks.json", "label-studio"),
        (b'{\n  "data": {"text": "x"}\n}', "task.json", "label-studio"),
        (b'{"text": "x", "accept": ["a"], "answer": "accept", "_input_hash": 1}\n', "db-out.jsonl", "prodigy"),
        (b'{"id": 1, "text": "x", "label": ["a"]}\n', "doccano.jsonl", "doccano"),
        (b'{"text": "x", "labels": ["a"]}\n', "docket.jsonl", "jsonl"),
        (b"PAR1\x15\x04", "whatever.bin", "parquet"),
        (b"PK\x03\x04", "dataset.zip", "hf-dataset"),
        (b"text,labels\n", "rows.csv", "csv"),
    ],
)
def test_format_is_told_from_the_content(head, name, expected):
    assert detect_format(name, None, head) == expected


def test_a_file_of_no_known_format_is_refused_with_the_formats_listed():
    with pytest.raises(ImportRejected) as refused:
        detect_format("labels.xlsx", None, b"\xd0\xcf\x11\xe0")
    message = str(refused.value)
    assert (
        "Label Studio" in message
        and "Prodigy" in message
        and "Parquet" in message
        and "nothing was imported" in message
    )


def test_manage_export_offers_each_format_and_the_label_studio_config(client, reviewers):
    from django.urls import reverse

    from tests.factories import PASSWORD

    project = labelled_project(multi_label=False, reviewers=reviewers, name="Manage downloads")
    admin = UserFactory(username="office-admin")
    MembershipFactory(project=project, user=admin, role="admin")
    client.login(username=admin.username, password=PASSWORD)

    page = client.get(reverse("manage:export", args=[project.pk])).content.decode()
    for fmt in FORMATS:
        assert reverse("manage:documents-export", args=[project.pk, fmt]) in page
    parquet = client.get(reverse("manage:documents-export", args=[project.pk, "parquet"]))
    assert parquet["Content-Type"] == "application/vnd.apache.parquet"
    assert b"".join(parquet.streaming_content)[:4] == b"PAR1"
    config = client.get(reverse("manage:label-studio-config", args=[project.pk]))
    assert b'<Choice value="third_party"' in config.content


def test_reviewer_cannot_download_the_label_studio_config(client, reviewers):
    from django.urls import reverse

    from tests.factories import PASSWORD

    project = labelled_project(multi_label=False, reviewers=reviewers, name="Reviewer config")
    client.login(username="ana", password=PASSWORD)
    assert client.get(reverse("manage:label-studio-config", args=[project.pk])).status_code == 403


EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("label-studio-tasks.json", "label-studio"),
        ("doccano.jsonl", "doccano"),
        ("prodigy-textcat.jsonl", "prodigy"),
        ("clauses.parquet", "parquet"),
    ],
)
def test_documented_example_files_import_as_described(name, fmt, reviewers):
    project = project_with_labels(name=f"Example {fmt}")
    for user in reviewers:
        MembershipFactory(project=project, user=user)

    batch = import_bytes(project, (EXAMPLES / name).read_bytes(), name)

    assert (batch.format, batch.created_count, batch.rejected_count) == (fmt, 5, 0)
    finals = {text: labels for _, text, _, labels in documents_of(project)}
    assert finals["We share purchase history with payment processors."] == ["third_party"]


def test_documented_dataset_directory_imports_from_the_command_line(reviewers):
    from django.core.management import call_command

    project = project_with_labels(name="Example dataset directory")
    out = io.StringIO()
    call_command("import_documents", str(project.pk), str(EXAMPLES / "clauses-dataset"), "--no-progress", stdout=out)
    assert "5 documents imported" in out.getvalue()
