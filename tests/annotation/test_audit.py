"""The audit log: each action leaves an event, admins filter and export it, and nothing in the app edits it."""

import csv
import io
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from annotation.manage import urls as manage_urls
from annotation.models import AuditEvent, Membership
from annotation.services import taxonomy
from annotation.services.audit import audit_events, audit_record
from annotation.services.imports import documents_import
from annotation.services.labeling import annotation_submit
from annotation.services.members import member_add, member_remove, member_set_role
from annotation.services.queue import next_document_for
from tests.factories import PASSWORD, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(project):
    user = UserFactory(username="ada")
    MembershipFactory(project=project, user=user, role="admin")
    return user


def actions(project):
    return list(AuditEvent.objects.filter(project=project).order_by("id").values_list("action", flat=True))


# --- Each action leaves its event ------------------------------------------------------------------------------


def test_annotation_create_and_change_are_recorded_with_before_and_after(project, reviewer):
    DocumentFactory(project=project)
    document = next_document_for(reviewer=reviewer, project=project).document
    annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])
    annotation_submit(reviewer=reviewer, document=document, label_keys=["third_party"])
    change = AuditEvent.objects.get(project=project, action="annotation.change")
    assert change.actor == reviewer
    assert change.before["labels"] == ["first_party"] and change.after["labels"] == ["third_party"]
    assert "annotation.create" in actions(project)


def test_people_changes_are_recorded(project, admin):
    added = member_add(project=project, actor=admin, identifier="kim@privacy.example")
    member_set_role(membership=added.membership, actor=admin, role="admin")
    member_remove(membership=Membership.objects.get(pk=added.membership.pk), actor=admin)
    assert actions(project) == ["membership.created", "membership.role_changed", "membership.removed"]


def test_api_key_creation_and_revocation_are_recorded(project, admin):
    from api.services import api_key_create, api_key_revoke

    issued = api_key_create(actor=admin, projects=[project], name="intake", scopes=["predict"], kind="personal")
    api_key_revoke(key=issued.key, actor=admin)
    assert [a for a in actions(project) if a.startswith("api_key.")] == ["api_key.created", "api_key.revoked"]
    assert token_not_logged(issued.token)


def token_not_logged(token):
    return not any(token in json.dumps([e.before, e.after]) for e in AuditEvent.objects.all())


def test_document_import_and_export_are_recorded(project, admin, tmp_path):
    source = tmp_path / "clauses.jsonl"
    source.write_text('{"id": "c1", "text": "We keep logs for 30 days."}\n', encoding="utf-8")
    documents_import(project=project, path=source, user=admin)
    call_command("export_documents", str(project.pk), "--format", "csv", "--output", str(tmp_path / "out.csv"))
    imported = AuditEvent.objects.get(project=project, action="import.completed")
    assert imported.actor == admin and imported.after["created"] == 1
    assert AuditEvent.objects.get(project=project, action="export.documents").after["format"] == "csv"


def test_model_promotion_and_rollback_are_recorded(project, admin):
    services = pytest.importorskip("learning.services")
    from learning.models import ModelVersion

    first, second = (
        ModelVersion.objects.create(
            project=project, number=n, status="ready", kind="fast", taxonomy_version=1, artifact_path=f"models/{n}"
        )
        for n in (1, 2)
    )
    services.model_version_promote(version=first, actor=admin)
    services.model_version_promote(version=second, actor=admin)
    services.model_version_rollback(project=project, actor=admin)
    assert [a for a in actions(project) if a.startswith("model.")] == [
        "model.promote",
        "model.promote",
        "model.rollback",
    ]
    rollback = AuditEvent.objects.get(project=project, action="model.rollback")
    assert rollback.before == {"active_version": 2} and rollback.after["active_version"] == 1


# Taxonomy operations each record one event: tests/annotation/test_taxonomy.py,
# test_each_operation_writes_one_audit_event_with_before_and_after.


# --- Reading it: filters and exports ----------------------------------------------------------------------------


@pytest.fixture
def events(project, admin, reviewer):
    """Four events: two taxonomy changes by ada today, a role change by ada and one by the reviewer long ago."""
    taxonomy.label_add(project=project, actor=admin, key="x", name="X")
    taxonomy.label_rename(label=project.taxonomy.labels.get(key="x"), actor=admin, name="Y")
    # Events are written at the time they happen (nothing can backdate a stored one), so these happen "then".
    now = timezone.now()
    with mock.patch("django.utils.timezone.now", return_value=now - timedelta(days=10)):
        audit_record(action="membership.role_changed", actor=admin, project=project, after={"role": "admin"})
    with mock.patch("django.utils.timezone.now", return_value=now - timedelta(days=40)):
        audit_record(action="annotation.create", actor=reviewer, project=project, after={"labels": ["a"]})
    audit_record(action="taxonomy.add", actor=admin, project=project_with_labels())  # another project: not shown
    return project


def test_filters_by_action_prefix_actor_and_days(events, admin, reviewer):
    project = events
    today = timezone.localdate()
    assert [e.action for e in audit_events(project=project, action="taxonomy.")] == ["taxonomy.rename", "taxonomy.add"]
    assert [e.action for e in audit_events(project=project, actor=reviewer.username)] == ["annotation.create"]
    recent = audit_events(project=project, since=today - timedelta(days=11), until=today - timedelta(days=9))
    assert [e.action for e in recent] == ["membership.role_changed"]
    assert audit_events(project=project).count() == 4


def test_the_audit_page_filters_and_links_exports_with_the_same_filter(client, events, admin):
    client.login(username=admin.username, password=PASSWORD)
    response = client.get(reverse("manage:audit", args=[events.pk]), {"action": "taxonomy.", "actor": "ada"})
    page = response.content.decode()
    assert page.count("<code>taxonomy.") == 2 and "membership.role_changed</code>" not in page
    assert "export.csv?action=taxonomy.&amp;actor=ada" in page


def test_csv_export_is_streamed_and_keeps_before_and_after(client, events, admin):
    client.login(username=admin.username, password=PASSWORD)
    response = client.get(reverse("manage:audit-export", args=[events.pk, "csv"]), {"action": "taxonomy.rename"})
    assert response.streaming and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["taxonomy.rename"]
    assert rows[0]["actor"] == "ada" and json.loads(rows[0]["before"])["name"] == "X"


def test_jsonl_export_has_one_event_a_line(client, events, admin):
    client.login(username=admin.username, password=PASSWORD)
    response = client.get(reverse("manage:audit-export", args=[events.pk, "jsonl"]))
    lines = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert len(lines) == 4 and lines[0]["action"] == "taxonomy.rename" and lines[-1]["action"] == "annotation.create"


# --- Append-only -----------------------------------------------------------------------------------------------


def test_the_app_has_no_route_that_edits_or_deletes_audit_events():
    audit_routes = {p.name for p in manage_urls.urlpatterns if "audit" in str(p.pattern)}
    assert audit_routes == {"audit", "audit-export"}


@pytest.mark.parametrize("name, args", [("manage:audit", []), ("manage:audit-export", ["csv"])])
def test_audit_pages_refuse_writes(client, events, admin, name, args):
    client.login(username=admin.username, password=PASSWORD)
    assert client.post(reverse(name, args=[events.pk, *args])).status_code == 405


def test_an_existing_audit_event_cannot_be_saved_or_deleted(events):
    event = AuditEvent.objects.filter(project=events).first()
    event.action = "something.else"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    assert AuditEvent.objects.filter(action="something.else").count() == 0


def test_the_django_admin_shows_audit_events_read_only(client, events):
    superuser = UserFactory(is_superuser=True, is_staff=True)
    client.login(username=superuser.username, password=PASSWORD)
    event = AuditEvent.objects.filter(project=events).first()
    change = reverse("admin:annotation_auditevent_change", args=[event.pk])
    assert client.get(change).status_code == 200
    assert client.post(change, {"action": "edited"}).status_code == 403
    assert (
        client.post(reverse("admin:annotation_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    )
    assert client.get(reverse("admin:annotation_auditevent_add")).status_code == 403
    event.refresh_from_db()
    assert event.action != "edited"
