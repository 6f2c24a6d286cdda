"""The Django admin (finding 10): a staff member who is admin of one project never sees another project's name."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from annotation.models import AuditEvent, ImportBatch
from annotation.services.audit import audit_record
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

SECRET = "Whistleblower intake B"

CHANGELISTS = [
    "annotation_project",
    "annotation_importbatch",
    "annotation_document",
    "annotation_annotation",
    "annotation_membership",
    "annotation_label",
    "annotation_taxonomyversion",
    "annotation_taxonomy",
    "annotation_auditevent",
    "learning_modelversion",
    "learning_trainingrun",
]


@pytest.fixture
def staff_admin_of_a():
    a, b = project_with_labels(name="Project A"), project_with_labels(name=SECRET)
    for project in (a, b):
        ImportBatch.objects.create(project=project, file_name=f"{project.pk}.csv", format="csv", options={})
        AnnotationFactory(document=DocumentFactory(project=project))
        audit_record(action="taxonomy.add", project=project)
    staff = UserFactory(is_staff=True)
    MembershipFactory(project=a, user=staff, role="admin")
    MembershipFactory(project=b, user=UserFactory(), role="admin")
    client = Client()
    client.force_login(staff)
    return {"client": client, "staff": staff, "a": a, "b": b}


def test_the_import_list_filter_names_only_the_staff_members_projects(staff_admin_of_a):
    client = staff_admin_of_a["client"]
    page = client.get(reverse("admin:annotation_importbatch_changelist")).content.decode()
    assert "Project A" in page and SECRET not in page
    # Asking for the other project's rows by id shows nothing of it either.
    other = staff_admin_of_a["b"].pk
    page = client.get(reverse("admin:annotation_importbatch_changelist") + f"?project={other}").content.decode()
    assert SECRET not in page and f"{other}.csv" not in page


def test_no_admin_page_names_another_project_even_with_every_view_permission(staff_admin_of_a):
    staff = staff_admin_of_a["staff"]
    staff.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = staff_admin_of_a["client"]
    for model in CHANGELISTS:
        response = client.get(reverse(f"admin:{model}_changelist"))
        assert response.status_code == 200, model
        assert SECRET not in response.content.decode(), model
    assert SECRET not in client.get(reverse("admin:index")).content.decode()


def test_the_choice_of_project_in_a_form_names_only_the_staff_members_projects(staff_admin_of_a):
    staff = staff_admin_of_a["staff"]
    staff.user_permissions.set(Permission.objects.filter(codename__in=["add_membership", "view_membership"]))
    page = staff_admin_of_a["client"].get(reverse("admin:annotation_membership_add")).content.decode()
    assert "Project A" in page and SECRET not in page


def test_a_superuser_still_sees_every_project(staff_admin_of_a):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:annotation_importbatch_changelist")).content.decode()
    assert SECRET in page and "Project A" in page
    assert AuditEvent.objects.filter(project_label=SECRET).exists()
