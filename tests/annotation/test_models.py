import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.deletion import ProtectedError

from annotation.models import AuditEvent, Document, Label
from tests.factories import AnnotationFactory, DocumentFactory, LabelFactory, project_with_labels

pytestmark = pytest.mark.django_db


def test_same_text_twice_in_one_project_is_refused_by_the_database():
    doc = DocumentFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Document.objects.create(project=doc.project, text=doc.text, content_hash=doc.content_hash)


def test_same_text_in_two_projects_is_allowed():
    doc = DocumentFactory()
    other = project_with_labels()
    Document.objects.create(project=other, text=doc.text, content_hash=doc.content_hash)


def test_external_id_is_unique_per_project_but_may_be_blank_many_times():
    project = project_with_labels()
    DocumentFactory(project=project, external_id="")
    DocumentFactory(project=project, external_id="")
    DocumentFactory(project=project, external_id="x")
    with pytest.raises(IntegrityError), transaction.atomic():
        DocumentFactory(project=project, external_id="x")


def test_shortcut_is_unique_within_a_taxonomy():
    project = project_with_labels(("a", "b"))
    with pytest.raises(IntegrityError), transaction.atomic():
        LabelFactory(taxonomy=project.taxonomy, key="c", shortcut="1")


def test_reviewer_has_one_annotation_per_document():
    annotation = AnnotationFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        AnnotationFactory(document=annotation.document, reviewer=annotation.reviewer)


def test_label_in_use_cannot_be_deleted():
    project = project_with_labels(("a", "b"))
    label = Label.objects.get(taxonomy__project=project, key="a")
    AnnotationFactory(document=DocumentFactory(project=project), label_list=[label])
    with pytest.raises(ProtectedError):
        label.delete()


def test_audit_events_cannot_be_changed_or_deleted():
    event = AuditEvent.objects.create(action="test.created", actor_label="system")
    event.action = "test.changed"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "test.created"


def test_database_refuses_to_rewrite_or_delete_audit_events_behind_the_apps_back():
    from django.db import DatabaseError

    event = AuditEvent.objects.create(action="import.completed", actor_label="ana")
    # The app's role lacks the privilege (docs/security.md); the trigger would refuse it anyway.
    with pytest.raises(DatabaseError, match="permission denied|append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened")
    with pytest.raises(DatabaseError, match="permission denied|append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk)._raw_delete(AuditEvent.objects.db)
    assert AuditEvent.objects.get(pk=event.pk).action == "import.completed"


def test_deleting_a_user_keeps_their_audit_events_with_the_name():
    from tests.factories import UserFactory

    user = UserFactory(username="leaver")
    event = AuditEvent.objects.create(action="annotation.create", actor=user, actor_label="leaver")
    user_id = user.pk
    user.delete()
    event.refresh_from_db()
    assert (event.actor_id, event.actor_label) == (user_id, "leaver")
