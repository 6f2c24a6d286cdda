"""The formats checked by the tools' own libraries: label-studio-sdk reads Docket's Label Studio export and
writes tasks Docket imports; `datasets` loads the Parquet and dataset-directory exports with their ClassLabel
features and writes files Docket imports.

label-studio-sdk pins numpy and opencv versions Docket's other libraries do not share, so it runs in a virtual
environment of its own, made once from PyPI (LABEL_STUDIO_SDK below) and reused by later runs.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value, load_dataset, load_from_disk

from annotation import selectors
from annotation.models import Document
from annotation.services.exports import export_dataset_directory, export_parquet, export_stream, label_studio_config
from tests.annotation.test_interchange_formats import (
    MONDAY,
    TUESDAY,
    documents_of,
    export_bytes,
    import_bytes,
    labelled_project,
)
from tests.factories import UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

LABEL_STUDIO_SDK = "label-studio-sdk==2.1.2"
SDK_VENV = Path(os.environ.get("DOCKET_LABEL_STUDIO_SDK_VENV", f"/tmp/docket-{LABEL_STUDIO_SDK.replace('==', '-')}"))
CHECK_TASKS = Path(__file__).parent / "label_studio_sdk" / "check_tasks.py"


@pytest.fixture(scope="session")
def sdk_python() -> Path:
    python = SDK_VENV / "bin" / "python"
    ready = SDK_VENV / ".installed"
    if not ready.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SDK_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", LABEL_STUDIO_SDK], check=True, timeout=900)
        ready.touch()
    return python


def scored(document, *, model: int) -> None:
    """The active model's prediction for `document`, as the learning loop stores it."""
    from learning.models import ModelVersion, QueuePriority

    ModelVersion.objects.create(
        project=document.project,
        number=model,
        status="active",
        kind="fast",
        taxonomy_version=document.project.taxonomy.version,
        label_keys=["first_party", "third_party", "data_security"],
        artifact_path=f"m/{model}",
    )
    QueuePriority.objects.create(
        document=document,
        project=document.project,
        score=0.4,
        model_version=model,
        probabilities={"first_party": 0.2, "third_party": 0.7, "data_security": 0.1},
    )


@pytest.fixture
def reviewers():
    return [UserFactory(username="ana"), UserFactory(username="ben")]


def test_label_studio_sdk_reads_docket_tasks_and_docket_imports_the_sdks(sdk_python, tmp_path, reviewers):
    project = labelled_project(multi_label=False, reviewers=reviewers, name="Checked by the SDK")
    scored(Document.objects.get(project=project, external_id="p-5"), model=4)
    config = tmp_path / "config.xml"
    config.write_text(label_studio_config(project))
    tasks = tmp_path / "tasks.json"
    tasks.write_bytes(export_bytes(project, "label-studio"))

    run = subprocess.run(
        [str(sdk_python), str(CHECK_TASKS), str(config), str(tasks), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])

    assert all(task["data_valid"] for task in report["tasks"])
    agreed = next(task for task in report["tasks"] if task["text"].startswith("We share purchase"))
    assert [(a["created_username"], a["completed_by"]) for a in agreed["annotations"]] == [("ana", None), ("ben", None)]
    assert agreed["annotations"][0]["created_at"] == MONDAY.isoformat()
    assert agreed["annotations"][0]["updated_at"] == TUESDAY.isoformat()
    assert all(a["errors"] == [] for task in report["tasks"] for a in task["annotations"])
    (predicted,) = [task["predictions"] for task in report["tasks"] if task["predictions"]]
    assert predicted == [{"model_version": "4", "score": pytest.approx(0.7), "errors": []}]
    # The converter sees every answer with its choice, as it would in Label Studio's own JSON-MIN export.
    choices = sorted((r["text"][:12], r["label"]) for r in report["json_min"] if "label" in r)
    assert ("We share pur", "third_party") in choices and ("Logs are kep", "data_security") in choices

    target = project_with_labels(name="Made by the SDK")
    batch = import_bytes(target, (tmp_path / "from-sdk.json").read_bytes(), "from-sdk.json")
    assert (batch.format, batch.created_count, batch.rejected_count) == ("label-studio", report["made"], 0)
    finals = selectors.final_labels_for(Document.objects.filter(project=target).values_list("pk", flat=True))
    assert sorted(final.labels[0] for final in finals.values()) == ["data_security", "first_party", "third_party"]


@pytest.mark.parametrize("multi_label", [False, True], ids=["ClassLabel", "Sequence(ClassLabel)"])
def test_datasets_loads_the_parquet_export_with_its_class_labels(tmp_path, reviewers, multi_label):
    project = labelled_project(multi_label=multi_label, reviewers=reviewers, name=f"Parquet {multi_label}")
    path = tmp_path / "export.parquet"
    export_parquet(project, path)

    dataset = load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache"))

    names = ["first_party", "third_party", "data_security"]
    column = "labels" if multi_label else "label"
    feature = dataset.features[column]
    class_label = feature.feature if multi_label else feature
    assert isinstance(class_label, ClassLabel) and class_label.names == names
    rows = {row["text"]: row for row in dataset}
    agreed = rows["We share purchase history with payment processors."]
    assert agreed[column] == ([1] if multi_label else 1)
    assert json.loads(agreed["metadata"]) == {"product": "Pay", "region": "EU", "pages": [3, 4]}
    assert [a["reviewer"] for a in agreed["annotations"]] == ["ana", "ben"]
    assert agreed["annotations"][0]["created_at"] == MONDAY
    assert rows["Not labelled yet."][column] == ([] if multi_label else -1)


def test_datasets_loads_the_directory_export(tmp_path, reviewers):
    project = labelled_project(multi_label=False, reviewers=reviewers, name="Directory")
    export_dataset_directory(project, tmp_path / "saved")

    dataset = load_from_disk(str(tmp_path / "saved"))

    assert dataset.features["label"].names == ["first_party", "third_party", "data_security"]
    assert dataset.num_rows == 5


def sdk_made_dataset(multi_label: bool) -> Dataset:
    names = ["first_party", "third_party", "data_security"]
    label = {"labels": Sequence(ClassLabel(names=names))} if multi_label else {"label": ClassLabel(names=names)}
    features = Features({"text": Value("string"), **label, "policy": Value("string")})
    values = [[0, 2], [1], []] if multi_label else [0, 1, -1]
    return Dataset.from_dict(
        {
            "text": ["Made by datasets, first.", "Made by datasets, second.", "Made by datasets, unlabelled."],
            "labels" if multi_label else "label": values,
            "policy": ["northwind", "northwind", "contoso"],
        },
        features=features,
    )


@pytest.mark.parametrize("multi_label", [False, True], ids=["ClassLabel", "Sequence(ClassLabel)"])
@pytest.mark.parametrize("shape", ["parquet", "save_to_disk"])
def test_files_written_by_datasets_import_with_their_label_names(tmp_path, multi_label, shape):
    project = project_with_labels(multi_label=multi_label, name=f"From datasets {shape} {multi_label}")
    dataset = sdk_made_dataset(multi_label)
    if shape == "parquet":
        dataset.to_parquet(str(tmp_path / "made.parquet"))
        content, name = (tmp_path / "made.parquet").read_bytes(), "made.parquet"
    else:
        from django.core.management import call_command

        dataset.save_to_disk(str(tmp_path / "made"))
        out = io.StringIO()
        call_command("import_documents", str(project.pk), str(tmp_path / "made"), "--no-progress", stdout=out)
        assert "3 documents imported" in out.getvalue()
        content = None
    if content is not None:
        batch = import_bytes(project, content, name)
        assert (batch.format, batch.created_count) == ("parquet", 3)

    expected = [
        (
            "",
            "Made by datasets, first.",
            {"policy": "northwind"},
            sorted(["first_party", "data_security"]) if multi_label else ["first_party"],
        ),
        ("", "Made by datasets, second.", {"policy": "northwind"}, ["third_party"]),
        ("", "Made by datasets, unlabelled.", {"policy": "contoso"}, []),
    ]
    assert documents_of(project) == expected


def test_export_command_writes_parquet_and_a_dataset_directory(tmp_path, reviewers):
    from django.core.management import call_command

    project = labelled_project(multi_label=True, reviewers=reviewers, name="Command")
    call_command("export_documents", str(project.pk), "--format", "parquet", "--output", str(tmp_path / "p.parquet"))
    call_command("export_documents", str(project.pk), "--format", "hf-dataset", "--output", str(tmp_path / "dir"))

    assert (
        load_dataset(
            "parquet", data_files=str(tmp_path / "p.parquet"), split="train", cache_dir=str(tmp_path / "c")
        ).num_rows
        == 5
    )
    assert load_from_disk(str(tmp_path / "dir")).features["labels"].feature.names[0] == "first_party"
    assert b"".join(export_stream(project, "parquet"))[:4] == b"PAR1"
