"""Blind review (finding 2): a reviewer never reads gold answers or colleagues' answers; leads and admins do."""

import pytest

from annotation.models import GoldAnswer, Label, Membership
from tests.api.conftest import client_with, personal_key
from tests.factories import AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def gold(home):
    """A gold document of the home project whose known answer is the second label."""
    document = DocumentFactory(project=home.project, status="labeled")
    GoldAnswer.objects.create(document=document, project=home.project, label_keys=[home.label.key])
    return document


def _read(user, project, path):
    token = personal_key(user, [project], ["read"])
    return client_with(token).get(f"/api/v1/projects/{project.pk}/{path}")


def test_a_reviewers_read_key_does_not_get_a_gold_answer(home, gold):
    # The review's request: GET /api/v1/projects/A/documents/<id> with a reviewer's read key.
    response = _read(home.reviewer, home.project, f"documents/{gold.pk}")
    assert response.status_code == 200
    assert response.json()["labels"] == []


def test_a_reviewer_does_not_read_a_colleagues_answer(home):
    colleague = UserFactory()
    MembershipFactory(project=home.project, user=colleague, role="reviewer")
    overlapped = DocumentFactory(project=home.project, status="labeled")
    AnnotationFactory(document=overlapped, reviewer=colleague, label_list=[home.label])
    assert _read(home.reviewer, home.project, f"documents/{overlapped.pk}").json()["labels"] == []
    listed = {d["id"]: d["labels"] for d in _read(home.reviewer, home.project, "documents").json()["results"]}
    assert listed[overlapped.pk] == []
    # The label filter would tell which documents a colleague gave that label to.
    found = _read(home.reviewer, home.project, f"documents?label={home.label.key}").json()["results"]
    assert overlapped.pk not in [d["id"] for d in found]


def test_a_reviewer_reads_their_own_answer(home):
    first = Label.objects.filter(taxonomy__project=home.project).order_by("order").first()
    assert _read(home.reviewer, home.project, f"documents/{home.labeled.pk}").json()["labels"] == [first.key]
    found = _read(home.reviewer, home.project, f"documents?label={first.key}").json()["results"]
    assert [d["id"] for d in found] == [home.labeled.pk]


@pytest.mark.parametrize("role", ["lead", "admin"])
def test_leads_and_admins_read_gold_and_final_labels(home, gold, role):
    person = UserFactory()
    MembershipFactory(project=home.project, user=person, role=role)
    assert _read(person, home.project, f"documents/{gold.pk}").json()["labels"] == [home.label.key]
    found = _read(person, home.project, "documents").json()["results"]
    assert {d["id"]: d["labels"] for d in found}[gold.pk] == [home.label.key]


def test_a_reviewer_role_service_key_reads_blind_too(home, gold):
    from tests.api.conftest import service_key

    token = service_key(home.admin, [home.project], ["read"], role="reviewer")
    response = client_with(token).get(f"/api/v1/projects/{home.project.pk}/documents/{gold.pk}")
    assert response.json()["labels"] == []
    assert Membership.objects.filter(project=home.project, role="reviewer").count() >= 2


def test_annotations_list_is_blind_for_reviewers_and_complete_for_leads(home):
    colleague = UserFactory()
    MembershipFactory(project=home.project, user=colleague, role="reviewer")
    AnnotationFactory(document=home.queued, reviewer=colleague, label_list=[home.label])
    lead = UserFactory()
    MembershipFactory(project=home.project, user=lead, role="lead")
    mine = _read(home.reviewer, home.project, "annotations").json()["results"]
    assert {a["reviewer"] for a in mine} == {home.reviewer.username}
    everyone = _read(lead, home.project, "annotations").json()["results"]
    assert {a["reviewer"] for a in everyone} >= {home.reviewer.username, colleague.username}
