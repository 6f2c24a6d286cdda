"""Downloading a model version as a bundle: a zip that plain SetFit loads, with its manifest and checksums."""

import io
import json
import zipfile

import numpy as np
import pytest

from annotation.models import AuditEvent
from learning.ml.bundle import bundle_read
from learning.models import ModelVersion
from tests.api.conftest import TRAINING_TEXTS, add_model_versions, assert_error, client_with, personal_key

pytestmark = pytest.mark.django_db

TEXTS = ["We sell your browsing history to ad networks.", "All backups are encrypted with AES-256."]


@pytest.fixture
def with_models(home, trained_models, serving_cache):
    add_model_versions(home, trained_models)
    return home


def download(side, number: int, scopes=("admin",)):
    client = client_with(personal_key(side.admin, [side.project], list(scopes)))
    return client.get(f"/api/v1/projects/{side.project.pk}/models/{number}/bundle")


def test_bundle_download_is_a_zip_that_setfit_loads_and_predicts_like_docket(with_models, trained_models, tmp_path):
    from setfit import SetFitModel

    from learning.ml.classifier import Classifier

    response = download(with_models, 1)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    name = f"docket-project-{with_models.project.pk}-model-v1"
    assert f'filename="{name}.zip"' in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        archive.extractall(tmp_path)
    bundle = bundle_read(tmp_path / name)
    assert (bundle.model_version, bundle.label_keys) == (1, list(TRAINING_TEXTS))
    assert bundle.taxonomy_version == with_models.project.taxonomy.version
    assert bundle.project == {"id": with_models.project.pk, "name": with_models.project.name}
    loaded = SetFitModel.from_pretrained(str(tmp_path / name), local_files_only=True)
    expected = Classifier.load(trained_models["v1"]).predict_proba(TEXTS)
    np.testing.assert_allclose(np.asarray(loaded.predict_proba(TEXTS)), expected, atol=1e-5)
    event = AuditEvent.objects.get(action="model.exported")
    assert (event.actor, event.after) == (with_models.admin, {"number": 1})


def test_a_failed_version_has_no_bundle(with_models):
    ModelVersion.objects.create(
        project=with_models.project, number=3, status="failed", kind="fast", taxonomy_version=1, error="boom"
    )
    error = assert_error(download(with_models, 3), 409, "bundle_unavailable")
    assert "failed" in error["message"]


def test_an_unknown_version_is_not_found_and_read_scope_is_not_enough(with_models):
    assert_error(download(with_models, 99), 404, "not_found")
    assert_error(download(with_models, 1, scopes=("read", "predict", "write")), 403, "scope_missing")


def test_the_manifest_lists_thresholds_per_label(with_models, tmp_path):
    response = download(with_models, 2)
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        manifest = json.loads(archive.read(f"docket-project-{with_models.project.pk}-model-v2/manifest.json"))
    assert manifest["thresholds"] == dict.fromkeys(TRAINING_TEXTS, 0.5)  # a single-label head decides by argmax
    assert (manifest["model_version"], manifest["decision_threshold"], manifest["multi_label"]) == (2, 0.5, False)
