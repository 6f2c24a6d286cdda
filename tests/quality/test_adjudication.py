"""Adjudication: disputed documents queue for admins, the decision becomes the final label, answers stay."""

import pytest

from annotation.exceptions import InvalidLabels
from annotation.models import Adjudication, AnnotationRevision, AuditEvent
from annotation.selectors import final_labels_for
from annotation.services.labeling import annotation_submit
from learning.services import label_snapshot
from quality.selectors import adjudication_history, adjudication_queue
from quality.services import NothingToAdjudicate, adjudication_decide
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db


@pytest.fixture
def disputed():
    project = project_with_labels(overlap_rate=1.0, gold_rate=0.0)
    document = DocumentFactory(project=project)
    alice, bob, admin = UserFactory(), UserFactory(), UserFactory()
    MembershipFactory(project=project, user=alice)
    MembershipFactory(project=project, user=bob)
    MembershipFactory(project=project, user=admin, role="admin")
    annotation_submit(reviewer=alice, document=document, label_keys=["first_party"])
    annotation_submit(reviewer=bob, document=document, label_keys=["third_party"])
    return project, document, alice, bob, admin


def test_disputed_document_enters_the_adjudication_queue_and_has_no_final_label(disputed):
    project, document, *_ = disputed
    assert [u.document_id for u in adjudication_queue(project)] == [document.pk]
    assert final_labels_for([document.pk])[document.pk].basis == "disputed"
    assert final_labels_for([document.pk])[document.pk].labels == []


def test_decision_becomes_the_final_label_and_leaves_the_queue(disputed):
    project, document, alice, bob, admin = disputed
    adjudication_decide(actor=admin, document=document, label_keys=["third_party"], note="shared with a processor")
    final = final_labels_for([document.pk])[document.pk]
    assert (final.labels, final.basis) == (["third_party"], "adjudicated")
    assert adjudication_queue(project) == []
    assert AuditEvent.objects.filter(action="document.adjudicate", target_id=str(document.pk)).count() == 1


def test_original_answers_and_earlier_decisions_are_kept_in_history(disputed):
    project, document, alice, bob, admin = disputed
    adjudication_decide(actor=admin, document=document, label_keys=["third_party"])
    adjudication_decide(actor=admin, document=document, label_keys=["data_security"])
    history = adjudication_history(document)
    assert {a["reviewer"]: a["labels"] for a in history["answers"]} == {
        alice.username: ["first_party"],
        bob.username: ["third_party"],
    }
    assert [d["label_keys"] for d in history["decisions"]] == [["third_party"], ["data_security"]]
    assert history["decisions"][0]["answers_seen"] == {alice.username: ["first_party"], bob.username: ["third_party"]}
    assert history["final"].labels == ["data_security"]
    assert AnnotationRevision.objects.filter(annotation__document=document).count() == 2
    assert Adjudication.objects.filter(document=document).count() == 2


def test_training_uses_the_adjudicated_label_and_skips_undecided_disputes(disputed):
    project, document, alice, bob, admin = disputed
    snapshot = label_snapshot(project)
    assert document.pk not in set(snapshot.train_ids) | set(snapshot.eval_ids)
    adjudication_decide(actor=admin, document=document, label_keys=["third_party"])
    snapshot = label_snapshot(project)
    targets = dict(
        zip(
            list(snapshot.train_ids) + list(snapshot.eval_ids),
            snapshot.train_targets + snapshot.eval_targets,
            strict=True,
        )
    )
    assert targets[document.pk] == "third_party"


def test_a_document_with_one_answer_cannot_be_adjudicated():
    project = project_with_labels()
    document = DocumentFactory(project=project)
    reviewer, admin = UserFactory(), UserFactory()
    annotation_submit(reviewer=reviewer, document=document, label_keys=["first_party"])
    with pytest.raises(NothingToAdjudicate):
        adjudication_decide(actor=admin, document=document, label_keys=["first_party"])


def test_a_decision_must_name_current_labels(disputed):
    project, document, alice, bob, admin = disputed
    with pytest.raises(InvalidLabels):
        adjudication_decide(actor=admin, document=document, label_keys=["no_such_label"])


def test_admin_adjudicates_through_the_page_and_a_reviewer_may_not(disputed, client):
    project, document, alice, bob, admin = disputed
    client.force_login(alice)
    assert client.get(f"/projects/{project.pk}/quality/adjudication/").status_code == 403
    client.force_login(admin)
    page = client.get(f"/projects/{project.pk}/quality/adjudication/")
    assert page.status_code == 200
    assert alice.username in page.content.decode() and bob.username in page.content.decode()
    response = client.post(
        f"/projects/{project.pk}/quality/adjudication/{document.pk}/", {"labels": ["first_party"], "note": ""}
    )
    assert response.status_code == 302
    assert final_labels_for([document.pk])[document.pk].labels == ["first_party"]


def test_a_decision_moves_the_retraining_clock_so_enough_of_them_retrain(disputed):
    from learning.services import label_event_count, training_due

    project, document, alice, bob, admin = disputed
    project.fast_retrain_every = 3
    project.save()
    assert label_event_count(project) == 2  # the two answers
    assert training_due(project, label_event_count(project)) is None
    adjudication_decide(actor=admin, document=document, label_keys=["third_party"])
    assert label_event_count(project) == 3
    assert training_due(project, label_event_count(project)) == "fast"


def test_a_lead_reviewer_adjudicates_and_reads_the_figures_but_manages_nothing(disputed, client):
    project, document, alice, bob, admin = disputed
    lead = UserFactory()
    MembershipFactory(project=project, user=lead, role="lead")
    client.force_login(lead)
    base = f"/projects/{project.pk}"
    assert client.get(f"{base}/quality/").status_code == 200
    page = client.get(f"{base}/quality/adjudication/")
    assert page.status_code == 200
    html = page.content.decode()
    # The tabs offer only the pages a lead opens.
    assert f'href="{base}/quality/gold/"' not in html and f'href="{base}/quality/label-errors/"' not in html
    for refused in ("/quality/gold/", "/quality/label-errors/", "/manage/", "/manage/members/", "/models/train/"):
        method = client.post if refused.endswith("train/") else client.get
        assert method(f"{base}{refused}").status_code == 403, refused
    response = client.post(f"{base}/quality/adjudication/{document.pk}/", {"labels": ["third_party"], "note": "lead"})
    assert response.status_code == 302
    assert final_labels_for([document.pk])[document.pk].labels == ["third_party"]
    assert Adjudication.objects.get(document=document).decided_by == lead


def test_reviewers_do_not_see_the_quality_link_and_leads_do(disputed, client):
    project, document, alice, bob, admin = disputed
    lead = UserFactory()
    MembershipFactory(project=project, user=lead, role="lead")
    quality = f'href="/projects/{project.pk}/quality/"'
    client.force_login(alice)
    assert quality not in client.get(f"/projects/{project.pk}/").content.decode()
    client.force_login(lead)
    assert quality in client.get(f"/projects/{project.pk}/").content.decode()
