"""No list in the Django admin asks the database once per row: every changelist a staff member can open is read
with a few rows and then with many more, and must ask the same number of queries both times."""

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELISTS = sorted(f"admin:{m._meta.app_label}_{m._meta.model_name}_changelist" for m in admin.site._registry)


def more_rows(n: int) -> None:
    """n more projects, each with a member, labelled and queued documents with annotations."""
    for _ in range(n):
        project = project_with_labels()
        reviewer = UserFactory()
        MembershipFactory(project=project, user=reviewer, role="reviewer")
        labels = list(project.taxonomy.labels.order_by("order"))
        for _ in range(2):
            AnnotationFactory(
                document=DocumentFactory(project=project, status="labeled"), reviewer=reviewer, label_list=labels[:2]
            )
        DocumentFactory(project=project)


@pytest.mark.parametrize("changelist", CHANGELISTS)
def test_an_admin_list_asks_as_many_queries_for_a_few_rows_as_for_many(changelist):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    url = reverse(changelist)
    more_rows(1)

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return len(captured)

    page_queries()
    few = page_queries()
    more_rows(8)
    page_queries()
    many = page_queries()
    assert many == few, f"{url}: {few} queries with a few rows, {many} with many"
