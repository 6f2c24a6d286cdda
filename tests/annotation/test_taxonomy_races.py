"""A taxonomy change and an answer in flight meet: one goes first, the other follows, neither gets a server error.

Each test holds one side's transaction open in a thread of its own (its own database connection), starts the
other side through the page or the API, and only then lets the first commit.
"""

import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.urls import reverse

from annotation.models import Annotation, AnnotationLabel, Label
from annotation.services import taxonomy
from annotation.services.labeling import annotation_submit, serve_ticket_issue
from tests.api.conftest import client_with, service_key
from tests.factories import PASSWORD, DocumentFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

MERGE = {"sources": ["first_party", "third_party"], "into": "new", "new_key": "parties", "new_name": "Parties"}


class Held:
    """Run `work` inside a transaction in another thread and keep it open until `release()`."""

    def __init__(self, work):
        self.ready, self.go, self.error = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self.thread.start()
        assert self.ready.wait(30), f"the held transaction did not start: {self.error!r}"

    def _run(self, work):
        try:
            with transaction.atomic():
                work()
                self.ready.set()
                self.go.wait(30)
        except Exception as error:  # the test asserts on it
            self.error = error
            self.ready.set()
        finally:
            connection.close()

    def release(self):
        self.go.set()
        self.thread.join(30)


class Call:
    """A page or API request made from another thread, since it may have to wait for a lock."""

    def __init__(self, request):
        self.response = None
        self.thread = threading.Thread(target=self._run, args=(request,), daemon=True)
        self.thread.start()

    def _run(self, request):
        try:
            self.response = request()
        finally:
            connection.close()

    def waits_on_a_lock(self) -> bool:
        """True once the request is blocked on a row lock; False if it finished without waiting."""
        # Generous: on a machine under heavy load a request takes seconds to reach its first query.
        deadline = time.monotonic() + 90
        while self.thread.is_alive() and time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    return True
            time.sleep(0.05)
        return False

    def result(self):
        self.thread.join(30)
        assert not self.thread.is_alive(), "the request never finished"
        return self.response


def logged_in(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_an_answer_in_flight_commits_before_a_merge_through_the_page_and_the_merge_maps_it(
    client, project, reviewer, project_admin
):
    document = DocumentFactory(project=project)
    answer = Held(lambda: annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"]))
    assert answer.error is None

    logged_in(client, project_admin)
    merge = Call(lambda: client.post(reverse("manage:merge", args=[project.pk]), {**MERGE, "apply": "1"}))
    assert merge.waits_on_a_lock(), "the merge went ahead under an answer that was not committed yet"
    answer.release()

    response = merge.result()
    assert answer.error is None, f"the answer failed at commit: {answer.error!r}"
    assert response.status_code == 302, response.content[:2000]
    stored = Annotation.objects.get(document=document, reviewer=reviewer)
    assert list(AnnotationLabel.objects.filter(annotation=stored).values_list("label__key", flat=True)) == ["parties"]
    assert list(stored.revisions.order_by("id").values_list("reason", flat=True)) == ["create", "taxonomy.merge"]


def test_an_answer_that_arrives_during_a_merge_waits_and_is_refused_with_409_to_reload(
    client, project, reviewer, project_admin
):
    document = DocumentFactory(project=project)
    merge = Held(
        lambda: taxonomy.labels_merge(
            project=project, actor=project_admin, source_keys=MERGE["sources"], target_key="parties", target_name="P"
        )
    )
    assert merge.error is None

    logged_in(client, reviewer)
    ticket = serve_ticket_issue(reviewer=reviewer, document=document)
    body = {"labels": ["first_party"], "submission_id": str(uuid.uuid4()), "ticket": ticket}
    answer = Call(
        lambda: client.post(
            reverse("annotation:document-annotate", args=[project.pk, document.pk]),
            body,
            content_type="application/json",
        )
    )
    assert answer.waits_on_a_lock(), "the answer did not wait for the taxonomy change in progress"
    merge.release()

    response = answer.result()
    assert merge.error is None
    assert response.status_code == 409, response.content[:2000]
    assert response.json()["code"] == "labels_changed"
    assert "labels changed" in response.json()["error"] and "reload" in response.json()["error"]
    assert not Annotation.objects.filter(document=document).exists()
    # Nothing half-written: the reviewer answers again under the new labels and it is stored.
    retry = client.post(
        reverse("annotation:document-annotate", args=[project.pk, document.pk]),
        {"labels": ["parties"], "submission_id": str(uuid.uuid4()), "ticket": ticket},
        content_type="application/json",
    )
    assert retry.status_code == 200 and retry.json()["created"]


def test_an_api_answer_that_arrives_during_a_merge_gets_409_labels_changed(project, project_admin):
    document = DocumentFactory(project=project)
    token = service_key(project_admin, [project], scopes=["read", "write"])
    merge = Held(
        lambda: taxonomy.labels_merge(
            project=project, actor=project_admin, source_keys=MERGE["sources"], target_key="parties", target_name="P"
        )
    )
    answer = Call(
        lambda: client_with(token).post(
            f"/api/v1/projects/{project.pk}/annotations",
            {"document": document.pk, "labels": ["third_party"]},
            format="json",
        )
    )
    assert answer.waits_on_a_lock()
    merge.release()

    response = answer.result()
    assert response.status_code == 409, response.content[:2000]
    assert response.json()["error"]["code"] == "labels_changed"
    assert not Annotation.objects.filter(document=document).exists()
    assert Label.objects.filter(taxonomy__project=project, key="parties").exists()


def test_a_label_that_never_existed_is_still_a_plain_400(client, project, reviewer):
    document = DocumentFactory(project=project)
    logged_in(client, reviewer)
    response = client.post(
        reverse("annotation:document-annotate", args=[project.pk, document.pk]),
        {"labels": ["no_such_label"], "ticket": serve_ticket_issue(reviewer=reviewer, document=document)},
        content_type="application/json",
    )
    assert response.status_code == 400 and "no_such_label" in response.json()["error"]
