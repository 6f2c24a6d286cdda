"""The audit log is append-only in the database itself: the app's PostgreSQL role may only INSERT and SELECT it.

These run as the role the suite (like production) connects as, set up by `make test` and `grant_app_role`.
"""

import pytest
from django.conf import settings
from django.db import DatabaseError, connection, transaction

from annotation.models import AuditEvent
from annotation.services.audit import audit_record
from tests.factories import MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


@pytest.fixture
def event():
    project = project_with_labels(name="Incident intake")
    admin = UserFactory(username="dpo-lead")
    MembershipFactory(project=project, user=admin, role="admin")
    return audit_record(action="taxonomy.rename", actor=admin, project=project, after={"name": "Consent"})


def _refused(statement: str) -> None:
    with pytest.raises(DatabaseError, match="permission denied|must be owner|append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(statement)


def test_the_app_connects_as_a_role_that_is_no_superuser_and_cannot_become_the_owner():
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
        role, superuser = cursor.fetchone()
        cursor.execute(
            "SELECT tableowner, pg_has_role(current_user, tableowner, 'MEMBER') FROM pg_tables WHERE tablename = %s",
            [TABLE],
        )
        owner, member_of_owner = cursor.fetchone()
    assert not superuser, f"the suite connects as the superuser {role}: run it through `make test`"
    assert role != owner and not member_of_owner


def test_the_app_cannot_update_an_audit_event(event):
    # The review's exact statement: it made the event vanish from the project's export.
    _refused(f"UPDATE {TABLE} SET project_id = NULL, actor_id = NULL WHERE id = {event.pk}")
    _refused(f"UPDATE {TABLE} SET action = 'nothing.happened' WHERE id = {event.pk}")
    event.refresh_from_db()
    assert (event.project_id, event.actor_id, event.action) != (None, None, "nothing.happened")
    assert event.project_id is not None and event.action == "taxonomy.rename"


def test_the_app_cannot_delete_an_audit_event(event):
    _refused(f"DELETE FROM {TABLE} WHERE id = {event.pk}")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_app_cannot_truncate_the_audit_log(event):
    _refused(f"TRUNCATE {TABLE}")
    _refused(f"TRUNCATE {TABLE} CASCADE")
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_the_app_cannot_switch_off_the_trigger_or_alter_the_table(event):
    _refused(f"ALTER TABLE {TABLE} DISABLE TRIGGER docket_audit_append_only")
    _refused(f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL")
    _refused(f"DROP TRIGGER docket_audit_append_only ON {TABLE}")
    _refused(f"ALTER TABLE {TABLE} RENAME TO old_audit")


def test_the_app_cannot_become_the_tables_owner(event):
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s", [TABLE])
        owner = cursor.fetchone()[0]
    _refused(f'SET ROLE "{owner}"')
    _refused("SET session_replication_role = replica")  # would silence the trigger; superusers only


def test_events_keep_project_and_actor_as_they_were_after_both_are_deleted(event):
    project_id, actor_id = event.project_id, event.actor_id
    event.project.delete()
    event.actor.delete()
    event.refresh_from_db()
    assert (event.project_id, event.project_label) == (project_id, "Incident intake")
    assert (event.actor_id, event.actor_label) == (actor_id, "dpo-lead")


def test_the_owner_url_is_not_the_apps():
    """The suite's set-up (make test) separates the two roles; one URL for both would prove nothing here."""
    assert settings.DATABASE_OWNER_URL, "DATABASE_OWNER_URL is not set: run the suite through `make test`"
    assert connection.settings_dict["USER"] not in settings.DATABASE_OWNER_URL.split("@")[0]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_celery_worker_connects_as_the_apps_role_too(celery_worker_process, client):
    """The worker writes audit events too (imports); it gets no more rights than the web process."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    from annotation.models import ImportBatch
    from tests.annotation.test_worker_import import wait_for
    from tests.factories import PASSWORD

    project = project_with_labels()
    admin = UserFactory(is_staff=True)
    MembershipFactory(project=project, user=admin, role="admin")
    client.login(username=admin.username, password=PASSWORD)
    upload = SimpleUploadedFile("clauses.csv", b"id,text\nc1,We sell nothing.\n")
    client.post(
        reverse("admin:annotation_project_import", args=[project.pk]),
        {"file": upload, "text_field": "text", "id_field": "id"},
    )
    batch = ImportBatch.objects.get(project=project)
    assert wait_for(lambda: ImportBatch.objects.get(pk=batch.pk).status == "completed")
    assert AuditEvent.objects.filter(project=project, action="import.completed").exists()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        others = {row[0] for row in cursor.fetchall()}
    assert others == {connection.settings_dict["USER"]}, others
