"""Small things people notice on every visit: the favicon, forms, confirmations, the audit filter, the pace."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from annotation.models import Annotation, AuditEvent, Label
from annotation.services.labeling import annotation_submit
from quality.dashboard import burn_down
from tests.factories import PASSWORD, AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_favicon_is_served_not_a_404(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header


def test_the_token_form_preselects_a_members_only_project(client, project, reviewer):
    client.login(username=reviewer.username, password=PASSWORD)
    page = client.get(reverse("my-tokens")).content.decode()
    checkbox = page.split(f'value="{project.pk}"', 1)[1].split(">", 1)[0]
    assert "checked" in checkbox


def test_the_token_form_preselects_nothing_for_a_member_of_two(client, project, reviewer):
    from tests.factories import project_with_labels

    second = project_with_labels(name="Second")
    MembershipFactory(project=second, user=reviewer, role="reviewer")
    client.login(username=reviewer.username, password=PASSWORD)
    page = client.get(reverse("my-tokens")).content.decode()
    assert "checked" not in page.split(f'value="{project.pk}"', 1)[1].split(">", 1)[0]


def test_the_audit_filter_names_action_families_in_words(client, project, project_admin):
    for action in ("annotation.create", "annotation.update"):
        AuditEvent.objects.create(action=action, project=project, actor_label="x")
    client.login(username=project_admin.username, password=PASSWORD)
    page = client.get(reverse("manage:audit", args=[project.pk])).content.decode()
    assert "All annotation actions: create, update" in page and ".* (all" not in page


def test_a_form_error_is_shown_once(client, project, project_admin):
    client.login(username=project_admin.username, password=PASSWORD)
    response = client.post(
        reverse("manage:label-add", args=[project.pk]),
        {"key": "ads", "name": "Ads", "shortcut": "1", "color": "#000000"},
    )
    assert response.content.decode().count("already belongs to") == 1


def test_a_broken_taxonomy_yaml_shows_a_readable_message_on_the_page(client, project, project_admin):
    client.login(username=project_admin.username, password=PASSWORD)
    broken = "labels:\n  - key: a\n    name: A\n   - key: b\n"
    response = client.post(reverse("manage:taxonomy-import", args=[project.pk]), {"text": broken, "format": "yaml"})
    page = response.content.decode()
    assert "Not valid YAML" in page and "line 4" in page and "&lt;unicode string&gt;" not in page
    assert page.count("Not valid YAML") == 1


def test_my_work_confirms_a_change_made_from_it(client, project, reviewer):
    document = DocumentFactory(project=project, external_id="clause-9")
    annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])
    client.login(username=reviewer.username, password=PASSWORD)
    label_page = client.get(reverse("annotation:label", args=[project.pk]) + f"?document={document.pk}")
    assert f"my-work/?saved={document.pk}" in label_page.content.decode()  # where the page returns after saving
    page = client.get(reverse("annotation:my-work", args=[project.pk]) + f"?saved={document.pk}&changed=1")
    assert 'id="saved-notice"' in page.content.decode() and "Saved your change to “clause-9”" in page.content.decode()
    other = UserFactory()
    MembershipFactory(project=project, user=other, role="reviewer")
    client.login(username=other.username, password=PASSWORD)
    page = client.get(reverse("annotation:my-work", args=[project.pk]) + f"?saved={document.pk}&changed=1")
    assert 'id="saved-notice"' not in page.content.decode()  # nothing said about someone else's document


def test_the_queue_pace_counts_reviewers_labels_over_the_days_they_worked(project, reviewer):
    label = Label.objects.filter(taxonomy__project=project).first()
    for _ in range(70):  # an import that brought labels today
        AnnotationFactory(
            document=DocumentFactory(project=project, status="labeled"),
            reviewer=None,
            source=Annotation.Source.IMPORT,
            label_list=[label],
        )
    for _ in range(10):  # the reviewers' first day
        AnnotationFactory(
            document=DocumentFactory(project=project, status="labeled"), reviewer=reviewer, label_list=[label]
        )
    for _ in range(20):
        DocumentFactory(project=project)
    chart = burn_down(project)
    assert chart["pace"] == pytest.approx(10.0)  # not (70 + 10) / 7
    assert "20 to go at 10.0 documents a day (reviewers, today)" in chart["note"]


def test_the_pace_spreads_over_the_last_seven_days_once_reviewers_worked_longer(project, reviewer):
    label = Label.objects.filter(taxonomy__project=project).first()
    for days_ago, n in ((20, 5), (3, 7), (0, 7)):
        for _ in range(n):
            annotation = AnnotationFactory(
                document=DocumentFactory(project=project, status="labeled"), reviewer=reviewer, label_list=[label]
            )
            Annotation.objects.filter(pk=annotation.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    DocumentFactory(project=project)
    assert burn_down(project)["pace"] == pytest.approx(14 / 7)
