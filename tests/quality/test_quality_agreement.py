"""Agreement over the database: the selector feeds quality.agreement the overlapped documents' answers."""

import pytest

from annotation.services.labeling import annotation_submit
from quality import agreement
from quality.selectors import overlapped_units, project_agreement
from quality.services import adjudication_decide, gold_answer_set
from tests.factories import DocumentFactory, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

# The classic 2x2 table of test_agreement.py: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> kappa 0.4.
PAIRS = [("first_party", "first_party")] * 20 + [("first_party", "third_party")] * 5
PAIRS += [("third_party", "first_party")] * 10 + [("third_party", "third_party")] * 15


@pytest.fixture
def two_reviewers():
    project = project_with_labels(overlap_rate=1.0, gold_rate=0.0)
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    for user in (alice, bob):
        MembershipFactory(project=project, user=user)
    return project, alice, bob


def test_selector_feeds_the_hand_computed_kappa(two_reviewers):
    project, alice, bob = two_reviewers
    for a, b in PAIRS:
        document = DocumentFactory(project=project)
        annotation_submit(reviewer=alice, document=document, label_keys=[a])
        annotation_submit(reviewer=bob, document=document, label_keys=[b])
    lone = DocumentFactory(project=project)
    annotation_submit(reviewer=alice, document=lone, label_keys=["first_party"])  # one reviewer: not a unit
    units = overlapped_units(project)
    assert len(units) == 50
    report = project_agreement(project, units=units)
    assert report.n_units == 50
    assert report.observed.value == pytest.approx(0.7)
    (pair,) = report.pairs
    assert (pair["a"], pair["b"]) == ("alice", "bob")
    assert pair["kappa"].value == pytest.approx(0.4)
    assert pair["kappa"].low <= 0.4 <= pair["kappa"].high
    expected_alpha = agreement.krippendorff_alpha([{"alice": a, "bob": b} for a, b in PAIRS])
    assert report.alpha.value == pytest.approx(expected_alpha)
    per_label = {row["key"]: row for row in report.per_label}
    assert per_label["first_party"]["observed"].value == pytest.approx(0.7)


def test_figures_are_withheld_below_ten_overlapped_documents(two_reviewers):
    project, alice, bob = two_reviewers
    for a, b in PAIRS[:9]:
        document = DocumentFactory(project=project)
        annotation_submit(reviewer=alice, document=document, label_keys=[a])
        annotation_submit(reviewer=bob, document=document, label_keys=[b])
    report = project_agreement(project)
    assert report.n_units == 9
    assert report.observed.value is None and "at least 10" in report.observed.note
    assert report.alpha.value is None


def test_reviewers_against_consensus_use_adjudicated_and_unanimous_labels(two_reviewers):
    project, alice, bob = two_reviewers
    admin = UserFactory()
    for a, b in PAIRS:
        document = DocumentFactory(project=project)
        annotation_submit(reviewer=alice, document=document, label_keys=[a])
        annotation_submit(reviewer=bob, document=document, label_keys=[b])
        if a != b:
            adjudication_decide(actor=admin, document=document, label_keys=[a])  # alice is always upheld
    consensus = {row["reviewer"]: row["estimate"] for row in project_agreement(project).consensus}
    assert consensus["alice"].value == pytest.approx(1.0)
    assert consensus["bob"].value == pytest.approx(35 / 50)


def test_gold_documents_are_not_counted_as_overlap(two_reviewers):
    project, alice, bob = two_reviewers
    document = DocumentFactory(project=project)
    gold_answer_set(actor=UserFactory(), document=document, label_keys=["first_party"])
    annotation_submit(reviewer=alice, document=document, label_keys=["first_party"])
    annotation_submit(reviewer=bob, document=document, label_keys=["third_party"])
    assert overlapped_units(project) == []
