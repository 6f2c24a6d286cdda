"""Submitting, editing and validating a reviewer's labels, and the knock on the learning loop."""

import sys
import threading
import time
import types
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.exceptions import DocketError, InvalidLabels
from annotation.models import Annotation, AnnotationRevision, AuditEvent, Document, Label, Lease, Taxonomy
from annotation.services import labeling
from annotation.services.knocks import knocks
from annotation.services.labeling import annotation_submit
from annotation.services.queue import next_document_for
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def document(project, reviewer):
    DocumentFactory(project=project)
    return next_document_for(reviewer=reviewer, project=project).document


def submit(reviewer, document, keys, **kwargs):
    return annotation_submit(reviewer=reviewer, document=document, label_keys=keys, **kwargs)


def test_submission_stores_labels_marks_document_labeled_and_removes_lease(reviewer, document):
    result = submit(reviewer, document, ["third_party"], seconds_spent=12.5, model_version_shown=3)
    assert result.created and result.changed and not result.lease_lost
    annotation = Annotation.objects.get(document=document, reviewer=reviewer)
    assert list(annotation.labels.values_list("key", flat=True)) == ["third_party"]
    assert annotation.seconds_spent == 12.5
    assert annotation.model_version_shown == 3
    document.refresh_from_db()
    assert document.status == Document.Status.LABELED
    assert not Lease.objects.filter(document=document).exists()
    assert AuditEvent.objects.filter(action="annotation.create", target_id=str(annotation.pk)).count() == 1


def test_double_submit_with_one_submission_id_stores_one_annotation(reviewer, document):
    submission_id = uuid.uuid4()
    first = submit(reviewer, document, ["first_party"], submission_id=submission_id)
    second = submit(reviewer, document, ["first_party"], submission_id=submission_id)
    assert second.replayed and not second.changed
    assert second.annotation.pk == first.annotation.pk
    assert Annotation.objects.filter(document=document).count() == 1
    assert AnnotationRevision.objects.filter(annotation=first.annotation).count() == 1


def test_submission_id_used_for_another_document_is_refused(project, reviewer, document):
    submission_id = uuid.uuid4()
    submit(reviewer, document, ["first_party"], submission_id=submission_id)
    other = DocumentFactory(project=project)
    with pytest.raises(DocketError):
        submit(reviewer, other, ["first_party"], submission_id=submission_id)


def test_submission_after_the_lease_expired_is_saved_and_says_so(reviewer, document):
    Lease.objects.filter(document=document).update(expires_at=timezone.now() - timedelta(seconds=1))
    result = submit(reviewer, document, ["data_security"])
    assert result.created and result.lease_lost
    assert Annotation.objects.filter(document=document, reviewer=reviewer).exists()
    assert not Lease.objects.filter(document=document).exists()


def test_submission_for_a_document_another_reviewer_took_is_saved(project, reviewer, document):
    other = UserFactory()
    MembershipFactory(project=project, user=other)
    Lease.objects.filter(document=document).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert next_document_for(reviewer=other, project=project).document == document
    result = submit(reviewer, document, ["first_party"])
    assert result.lease_lost
    assert Annotation.objects.filter(document=document, reviewer=reviewer).exists()
    # The other reviewer's answer is saved as well when it comes.
    assert not submit(other, document, ["third_party"]).lease_lost
    assert Annotation.objects.filter(document=document).count() == 2


def test_late_answer_leaves_the_live_lease_of_the_reviewer_who_took_the_document(project, reviewer, document):
    other = UserFactory()
    MembershipFactory(project=project, user=other)
    Lease.objects.filter(document=document).update(expires_at=timezone.now() - timedelta(seconds=1))
    taken = next_document_for(reviewer=other, project=project)
    assert taken.document == document
    before = Lease.objects.get(document=document)

    assert submit(reviewer, document, ["first_party"]).lease_lost  # the late answer, saved

    after = Lease.objects.get(document=document)  # the other reviewer's hold is untouched
    assert (after.reviewer_id, after.acquired_at, after.expires_at) == (other.pk, before.acquired_at, before.expires_at)
    # Asking again (a reload) hands them the same document, and their answer is not told its hold expired.
    assert next_document_for(reviewer=other, project=project).document == document
    result = submit(other, document, ["third_party"])
    assert result.created and not result.lease_lost
    assert not Lease.objects.filter(document=document).exists()


def test_edit_keeps_history(reviewer, document):
    created = submit(reviewer, document, ["first_party"])
    edited = submit(reviewer, document, ["third_party"])
    assert not edited.created and edited.changed
    assert edited.annotation.pk == created.annotation.pk
    revisions = list(AnnotationRevision.objects.filter(annotation=created.annotation))
    assert [(r.reason, r.label_keys) for r in revisions] == [("create", ["first_party"]), ("edit", ["third_party"])]
    change = AuditEvent.objects.get(action="annotation.change")
    assert change.before["labels"] == ["first_party"] and change.after["labels"] == ["third_party"]


def test_resubmitting_the_same_labels_changes_nothing(reviewer, document):
    created = submit(reviewer, document, ["first_party"])
    again = submit(reviewer, document, ["first_party"])
    assert not again.changed
    assert AnnotationRevision.objects.filter(annotation=created.annotation).count() == 1
    assert not AuditEvent.objects.filter(action="annotation.change").exists()


def test_flagged_document_stays_held_when_a_late_answer_arrives(reviewer, document):
    Document.objects.filter(pk=document.pk).update(status=Document.Status.FLAGGED)
    submit(reviewer, document, ["first_party"])
    document.refresh_from_db()
    assert document.status == Document.Status.FLAGGED


def test_accepted_suggestion_is_recorded(reviewer, document):
    result = submit(reviewer, document, ["third_party"], suggested_labels=["third_party"], model_version_shown=2)
    assert result.annotation.suggestion_accepted is True
    assert result.annotation.suggested_labels == ["third_party"]


def test_changed_suggestion_is_recorded(reviewer, document):
    result = submit(reviewer, document, ["first_party"], suggested_labels=["third_party"])
    assert result.annotation.suggestion_accepted is False


def test_no_suggestion_records_neither(reviewer, document):
    assert submit(reviewer, document, ["first_party"]).annotation.suggestion_accepted is None


def test_seconds_spent_is_bounded(reviewer, document):
    assert submit(reviewer, document, ["first_party"], seconds_spent=10**9).annotation.seconds_spent == 4 * 3600


def test_single_label_project_takes_exactly_one_label(reviewer, document):
    with pytest.raises(InvalidLabels, match="exactly one label"):
        submit(reviewer, document, ["first_party", "third_party"])
    with pytest.raises(InvalidLabels, match="exactly one label"):
        submit(reviewer, document, [])
    assert not Annotation.objects.exists()


def test_multi_label_project_takes_one_or_more_labels():
    project = project_with_labels(multi_label=True)
    reviewer = UserFactory()
    MembershipFactory(project=project, user=reviewer)
    document = DocumentFactory(project=project)
    with pytest.raises(InvalidLabels, match="at least one"):
        submit(reviewer, document, [])
    result = submit(reviewer, document, ["first_party", "data_security"])
    assert sorted(result.annotation.labels.values_list("key", flat=True)) == ["data_security", "first_party"]


def test_unknown_label_is_refused_with_its_name(reviewer, document):
    with pytest.raises(InvalidLabels, match="not_a_label"):
        submit(reviewer, document, ["not_a_label"])


def test_deprecated_label_is_refused(project, reviewer, document):
    Label.objects.filter(taxonomy__project=project, key="first_party").update(deprecated=True)
    with pytest.raises(InvalidLabels, match="first_party"):
        submit(reviewer, document, ["first_party"])


def test_another_projects_label_is_refused(reviewer, document):
    project_with_labels(("marketing",))
    with pytest.raises(InvalidLabels, match="marketing"):
        submit(reviewer, document, ["marketing"])


def test_learning_loop_hears_of_new_labels_after_commit(reviewer, document, django_capture_on_commit_callbacks):
    calls = []
    fake = types.ModuleType("learning.tasks")
    fake.labels_changed = types.SimpleNamespace(delay=calls.append)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "learning.tasks", fake)
        mp.setattr("learning.tasks", fake, raising=False)
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            submit(reviewer, document, ["first_party"])
        assert knocks.flush()  # sent from the process's knock thread, not the request
    assert len(callbacks) == 1
    assert calls == [document.project_id]


def test_a_submission_is_acknowledged_without_waiting_for_the_broker(
    reviewer, document, django_capture_on_commit_callbacks
):
    """The knock goes out from the knock thread: a broker that hangs holds no reviewer's answer."""
    broker_answers = threading.Event()
    sent = []

    def slow_broker(project_id):
        broker_answers.wait(10)
        sent.append(project_id)

    fake = types.ModuleType("learning.tasks")
    fake.labels_changed = types.SimpleNamespace(delay=slow_broker)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "learning.tasks", fake)
        mp.setattr("learning.tasks", fake, raising=False)
        started = time.monotonic()
        with django_capture_on_commit_callbacks(execute=True):
            submit(reviewer, document, ["first_party"])
        assert time.monotonic() - started < 5
        assert sent == []
        broker_answers.set()
        assert knocks.flush()
    assert sent == [document.project_id]


def test_unchanged_resubmission_does_not_knock(reviewer, document, django_capture_on_commit_callbacks):
    submit(reviewer, document, ["first_party"])
    with django_capture_on_commit_callbacks() as callbacks:
        submit(reviewer, document, ["first_party"])
    assert callbacks == []


def test_notify_learning_does_nothing_until_the_task_exists():
    fake = types.ModuleType("learning.tasks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "learning.tasks", fake)
        mp.setattr("learning.tasks", fake, raising=False)
        labeling.notify_learning(1)  # no labels_changed attribute: nothing to call, nothing raised


def test_notify_learning_logs_a_broker_failure_instead_of_raising(caplog):
    def refuse(project_id):
        raise ConnectionError("broker down")

    fake = types.ModuleType("learning.tasks")
    fake.labels_changed = types.SimpleNamespace(delay=refuse)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "learning.tasks", fake)
        mp.setattr("learning.tasks", fake, raising=False)
        labeling.notify_learning(7)
    assert "project 7" in caplog.text


def test_one_statement_answer_is_not_stored_when_the_taxonomy_moved_on_after_its_labels_were_read(
    project, reviewer, document
):
    labels = labeling.labels_for_submission(project, ["first_party"])
    stale = labels[0].taxonomy.version
    Taxonomy.objects.filter(project=project).update(version=stale + 1)  # a change committed meanwhile
    stored = labeling._first_answer_insert(
        reviewer=reviewer,
        project=project,
        document=document,
        labels=labels,
        taxonomy_version=stale,
        submission_id=None,
        seconds_spent=None,
        served_at=None,
        model_version_shown=None,
        suggested=[],
    )
    assert stored is None
    assert not Annotation.objects.filter(document=document).exists()
    assert not AuditEvent.objects.filter(action="annotation.create").exists()
    assert Lease.objects.filter(document=document, reviewer=reviewer).exists()
    # The general path then stores it under the taxonomy as it is now.
    assert submit(reviewer, document, ["first_party"]).created
