"""manage.py export_model: a trained version becomes a bundle that scores outside Docket, and refuses what it must."""

import json

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from learning import services, serving
from learning.ml.bundle import CHECKSUMS, BundleInvalid, bundle_read
from learning.models import TrainingRun
from tests.learning.conftest import KEYS, POOL, build_labelled_project

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def trained_project():
    project, _ = build_labelled_project()
    run = services.training_run_request(project=project, kind="fast", trigger=TrainingRun.Trigger.LABELS)
    run = services.training_run_execute(run_id=run.pk)
    assert run.status == "succeeded", run.error
    return project, run.model_version


def test_export_model_writes_a_bundle_that_predicts_what_docket_predicts(artifact_dir, tmp_path):
    from setfit import SetFitModel

    project, version = trained_project()
    out = tmp_path / "bundle"
    call_command("export_model", project.name, "--out", str(out))
    bundle = bundle_read(out)
    assert (bundle.model_version, bundle.taxonomy_version) == (1, project.taxonomy.version)
    assert bundle.label_keys == list(KEYS)
    assert bundle.label_names == [label["name"] for label in version.labels]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["thresholds"]) == set(KEYS) and manifest["body_id"] == version.body_id
    served = serving.ModelCache().active(project)
    expected = served.predict_proba(POOL)
    model = SetFitModel.from_pretrained(str(out), local_files_only=True)
    np.testing.assert_allclose(np.asarray(model.predict_proba(POOL)), expected, atol=1e-5)
    assert bundle.decide(expected) == served.decide(expected)


def test_a_changed_file_fails_the_checksums(artifact_dir, tmp_path):
    project, _ = trained_project()
    out = tmp_path / "bundle"
    call_command("export_model", str(project.pk), "--version", "1", "--out", str(out))
    (out / "labels.json").write_text((out / "labels.json").read_text().replace("first_party", "first_parties"))
    with pytest.raises(BundleInvalid, match="labels.json"):
        bundle_read(out)
    (out / CHECKSUMS).unlink()
    with pytest.raises(BundleInvalid, match=CHECKSUMS):
        bundle_read(out)


def test_export_refuses_a_missing_version_and_a_used_directory(artifact_dir, tmp_path):
    project, _ = trained_project()
    with pytest.raises(CommandError, match="no model version 7"):
        call_command("export_model", str(project.pk), "--version", "7", "--out", str(tmp_path / "b"))
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not empty"):
        call_command("export_model", str(project.pk), "--out", str(used))
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
