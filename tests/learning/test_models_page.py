"""The models page: who sees what, the live status endpoint, the learning curve."""

from datetime import timedelta

import pytest
from django.utils import timezone

from learning import tasks
from learning.models import ModelVersion, TrainingRun
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def add_versions(project):
    ModelVersion.objects.create(
        project=project,
        number=1,
        status="retired",
        kind="fast",
        taxonomy_version=1,
        artifact_path="m/1",
        train_label_count=20,
        eval_label_count=4,
        macro_f1=0.55,
        micro_f1=0.6,
    )
    ModelVersion.objects.create(
        project=project,
        number=2,
        status="active",
        kind="fast",
        taxonomy_version=1,
        artifact_path="m/2",
        train_label_count=40,
        eval_label_count=7,
        macro_f1=0.71,
        micro_f1=0.74,
        metrics={
            "macro_f1": 0.71,
            "per_label": {"first_party": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 3}},
            "confusion": {"labels": ["first_party", "third_party"], "matrix": [[2, 1], [0, 4]]},
            "comparison": {"promoted": True, "reason": "First model of the project."},
        },
    )
    ModelVersion.objects.create(
        project=project,
        number=3,
        status="ready",
        kind="slow",
        taxonomy_version=1,
        artifact_path="m/3",
        train_label_count=60,
        eval_label_count=9,
        macro_f1=0.69,
        micro_f1=0.72,
    )


def models_url(project, suffix=""):
    return f"/projects/{project.pk}/models/{suffix}"


def test_admin_sees_versions_and_every_button(client, project, project_admin):
    add_versions(project)
    client.force_login(project_admin)
    page = client.get(models_url(project)).content.decode()
    assert 'id="train-now"' in page and 'id="rollback"' in page
    assert page.count('class="secondary promote"') == 2  # v1 (retired) and v3 (ready), not the active v2
    assert "0.710" in page and "v3" in page


def test_reviewer_sees_the_models_but_no_button(client, project, reviewer):
    add_versions(project)
    client.force_login(reviewer)
    response = client.get(models_url(project))
    assert response.status_code == 200
    page = response.content.decode()
    assert "0.710" in page
    for button in ('id="train-now"', 'id="rollback"', "promote", 'id="rescore-now"'):
        assert button not in page


def test_non_member_gets_not_found_everywhere(client, project):
    add_versions(project)
    client.force_login(UserFactory())
    for suffix in ("", "status/", "curve.svg", "2/"):
        assert client.get(models_url(project, suffix)).status_code == 404
    for suffix in ("train/", "rollback/", "3/promote/"):
        assert client.post(models_url(project, suffix)).status_code == 404


def test_reviewer_cannot_train_or_roll_back(client, project, reviewer):
    add_versions(project)
    client.force_login(reviewer)
    assert client.post(models_url(project, "train/")).status_code == 403
    assert client.post(models_url(project, "rollback/")).status_code == 403
    assert not TrainingRun.objects.exists()
    assert ModelVersion.objects.get(project=project, status="active").number == 2


def test_train_now_queues_a_slow_run_for_the_admin(
    client, project, project_admin, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(tasks.train_slow, "delay", lambda run_id: sent.append(run_id))
    client.force_login(project_admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(models_url(project, "train/"))
    assert response.status_code == 302
    run = TrainingRun.objects.get(project=project)
    assert (run.kind, run.trigger, run.requested_by) == ("slow", "admin", project_admin)
    assert sent == [run.pk]


def test_status_endpoint_reports_progress_and_the_error_of_a_failed_run(client, project, reviewer, settings):
    settings.DOCKET_STALE_SECONDS = 60
    run = TrainingRun.objects.create(
        project=project,
        kind="slow",
        trigger="admin",
        status="running",
        phase="Fine-tuning the body",
        progress_done=3,
        progress_total=10,
        celery_task_id="t",
        heartbeat_at=timezone.now(),
        attempts=3,  # the last one: a silent worker now ends the run
    )
    client.force_login(reviewer)
    body = client.get(models_url(project, "status/")).json()
    assert body["run"]["status"] == "running" and body["run"]["percent"] == 30
    assert body["run"]["phase"] == "Fine-tuning the body"
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    body = client.get(models_url(project, "status/")).json()
    assert body["run"]["status"] == "failed" and body["run"]["finished"]
    assert "stopped sending heartbeats" in body["run"]["error"]


def test_learning_curve_is_an_svg_with_one_point_per_evaluated_version(client, project, reviewer):
    add_versions(project)
    client.force_login(reviewer)
    response = client.get(models_url(project, "curve.svg"))
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    assert svg.startswith("<svg") and svg.count("<circle") == 3 + 3  # three versions, three legend dots
    assert "macro-F1 0.710 with 40 training labels" in svg


def test_version_page_shows_per_label_metrics_and_the_confusion_matrix(client, project, reviewer):
    add_versions(project)
    client.force_login(reviewer)
    page = client.get(models_url(project, "2/")).content.decode()
    assert "Per label" in page and "0.750" in page
    assert "Confusion matrix" in page
    assert client.get(models_url(project, "9/")).status_code == 404


def test_the_cadence_is_said_once_and_promote_asks_like_roll_back(client, project, project_admin):
    add_versions(project)
    project.fast_retrain_every, project.slow_retrain_every = 10, 200
    project.save()
    client.force_login(project_admin)
    page = client.get(models_url(project)).content.decode()
    assert "Every 10 new labels refit the classifier head" in page and "Every label" not in page
    promote_forms = [part for part in page.split("<form") if "promote" in part.split(">", 1)[0]]
    assert promote_forms and all("return confirm('Promote v" in form for form in promote_forms)
