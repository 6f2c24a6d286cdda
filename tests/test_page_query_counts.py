"""No page asks the database once per row it shows: each page is read with a few rows, then with many more
(members, labelled documents with their annotations, flagged and queued documents), and must ask the same
number of queries both times.

Transactional tests, so the counts are those of a deployment.
"""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from annotation.services.members import member_add
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

PAGES = (
    "",
    "label/",
    "my-work/",
    "legal-review/",
    "manage/",
    "manage/settings/",
    "manage/taxonomy/",
    "manage/taxonomy/versions/",
    "manage/members/",
    "manage/import/",
    "manage/export/",
    "manage/audit/",
    "keys/",
    "models/",
    "quality/",
    "quality/adjudication/",
    "quality/gold/",
    "quality/label-errors/",
    "explore/",
    "manage/webhooks/",
)


_invited = iter(range(1_000_000))


def more_rows(project, admin, n: int) -> None:
    labels = list(project.taxonomy.labels.order_by("order"))
    for i in range(n):
        reviewer = UserFactory()
        MembershipFactory(project=project, user=reviewer, role="reviewer")
        for who in (reviewer, admin):
            AnnotationFactory(
                document=DocumentFactory(project=project, status="labeled"),
                reviewer=who,
                label_list=labels[i % 2 : i % 2 + 2],
            )
        DocumentFactory(project=project, status="flagged")
        DocumentFactory(project=project)
        # Someone the admin invited, who has no password yet: the people page offers them a password link.
        invited = member_add(project=project, actor=admin, identifier=f"invited-{next(_invited)}@example.org")
        assert invited.created_user


@pytest.mark.parametrize("page", PAGES)
def test_a_page_asks_as_many_queries_for_a_few_rows_as_for_many(project, project_admin, page):
    client = Client()
    client.force_login(project_admin)
    url = f"/projects/{project.pk}/{page}"
    more_rows(project, project_admin, 1)

    def page_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        return len(captured)

    page_queries()  # once-per-process reads (label keys of a taxonomy version, compiled statements)
    few = page_queries()
    more_rows(project, project_admin, 12)
    page_queries()
    many = page_queries()
    assert many == few, f"{url}: {few} queries with a few rows, {many} with many"
