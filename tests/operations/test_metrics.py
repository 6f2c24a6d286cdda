"""/metrics: django-prometheus's figures and Docket's own, readable by Prometheus, guarded by a token if set."""

import pytest

from learning.models import TrainingRun
from tests.factories import project_with_labels

pytestmark = pytest.mark.django_db


def test_metrics_report_queue_depth_training_runs_by_outcome_and_labels(client):
    project = project_with_labels()
    TrainingRun.objects.create(project=project, kind="fast", trigger="labels", status="succeeded")
    TrainingRun.objects.create(project=project, kind="slow", trigger="admin", status="failed")
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'docket_queue_depth{queue="celery"}' in text
    assert 'docket_training_runs{kind="fast",status="succeeded"} 1.0' in text
    assert 'docket_training_runs{kind="slow",status="failed"} 1.0' in text
    assert "# TYPE docket_labels_last_minute gauge" in text
    assert "django_http_requests_total_by_method_total" in text
    assert "# TYPE docket_predict_seconds histogram" in text


def test_queue_depth_counts_messages_waiting_on_the_broker(client, settings):
    from config.celery import app

    queue = "celery"
    app.control.purge()
    with app.connection_for_write() as conn:
        producer = conn.Producer()
        for _ in range(3):
            producer.publish({"probe": True}, routing_key=queue, declare=[app.amqp.queues[queue]])
    try:
        text = client.get("/metrics").content.decode()
        assert f'docket_queue_depth{{queue="{queue}"}} 3.0' in text
    finally:
        app.control.purge()


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.DOCKET_METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
