"""Screenshots of the insights dashboard and the adjudication page on a realistic privacy-office project.

They land in test-artifacts/screenshots/; with DOCKET_SCREENSHOTS=docs they replace docs/img/dashboard.png and
docs/img/adjudication.png.
"""

import os
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation, ImportBatch
from annotation.services.labeling import annotation_submit
from learning.models import ModelVersion
from quality.services import adjudication_decide
from tests.browser.conftest import ARTIFACTS, ROOT, log_in
from tests.factories import (
    PASSWORD,
    DocumentFactory,
    LabelFactory,
    MembershipFactory,
    ProjectFactory,
    TaxonomyFactory,
    UserFactory,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [
    ("first_party", "First Party Collection/Use", "#1f6f8b"),
    ("third_party", "Third Party Sharing", "#7a4f9a"),
    ("user_choice", "User Choice/Control", "#2e7d4f"),
    ("data_retention", "Data Retention", "#8a6d1f"),
    ("data_security", "Data Security", "#a4492b"),
]
TEXTS = [
    "We use your order history to recommend products you may like.",
    "Our analytics provider receives your device identifier and approximate location.",
    "You can turn off personalised offers at any time under Settings > Privacy.",
    "Support chat transcripts are deleted 18 months after the conversation ends.",
    "Card numbers are encrypted at rest with keys held in a hardware security module.",
]


def save(page, name: str) -> None:
    target = ROOT / "docs" / "img" if os.environ.get("DOCKET_SCREENSHOTS") == "docs" else ARTIFACTS / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=target / name, full_page=True)


def test_dashboard_and_adjudication_screenshots(new_page):
    rng = random.Random(4)
    project = ProjectFactory(name="Northwind privacy review", overlap_rate=0.2, gold_rate=0.0)
    taxonomy = TaxonomyFactory(project=project)
    for i, (key, name, color) in enumerate(LABELS):
        LabelFactory(taxonomy=taxonomy, key=key, name=name, color=color, order=i, shortcut=str(i + 1))
    reviewers = [UserFactory(username=n) for n in ("alice", "bob", "chen")]
    for user in reviewers:
        MembershipFactory(project=project, user=user)
    admin = UserFactory(username="dana")
    MembershipFactory(project=project, user=admin, role="admin")
    batches = [
        ImportBatch.objects.create(project=project, file_name=name, format="csv", status="completed")
        for name in ("policy-clauses-2024.csv", "review-notes-q1.jsonl", "dsar-requests-march.csv")
    ]
    now = timezone.now()
    disputed = []
    for i in range(150):
        true = rng.choices(range(5), weights=[5, 4, 2, 2, 3])[0]
        document = DocumentFactory(
            project=project,
            text=f"{TEXTS[true]} (clause {i})",
            import_batch=batches[i % 3],
            metadata={"product": ["Mail", "Maps", "Pay"][i % 3 if rng.random() < 0.7 else 0], "region": "EU"},
        )
        if i >= 120:
            continue  # still in the queue
        first, second = rng.sample(reviewers, 2)
        answers = [(first, true)]
        if i < 40:  # overlapped
            answers.append((second, true if rng.random() < 0.8 else rng.randrange(5)))
        for reviewer, label in answers:
            annotation_submit(
                reviewer=reviewer,
                document=document,
                label_keys=[LABELS[label][0]],
                seconds_spent=rng.lognormvariate(3.2, 0.5) * (1.4 if reviewer.username == "chen" else 1),
            )
        when = now - timedelta(days=34 * (1 - i / 120), hours=rng.randrange(8))
        Annotation.objects.filter(document=document).update(created_at=when, updated_at=when)
        if len(answers) == 2 and answers[0][1] != answers[1][1]:
            disputed.append(document)
    for document in disputed[: len(disputed) // 2]:
        adjudication_decide(actor=admin, document=document, label_keys=[LABELS[rng.randrange(5)][0]])
    keys = [k for k, _n, _c in LABELS]
    for number, (macro, status) in enumerate([(0.52, "retired"), (0.63, "retired"), (0.71, "active")], start=1):
        matrix = [[(18 if i == j else rng.randrange(0, 4)) for j in range(5)] for i in range(5)]
        ModelVersion.objects.create(
            project=project,
            number=number,
            status=status,
            kind="fast",
            taxonomy_version=1,
            artifact_path=f"m/{number}",
            train_label_count=30 * number,
            eval_label_count=95,
            metrics={"macro_f1": macro, "micro_f1": macro + 0.05, "confusion": {"labels": keys, "matrix": matrix}},
        )

    page = new_page(viewport={"width": 1280, "height": 1000})
    log_in(page, admin.username, PASSWORD)
    page.goto(f"/projects/{project.pk}/quality/?field=product")
    page.wait_for_selector("#chart-field svg")
    assert page.locator("section.chart-card svg").count() == 9
    save(page, "dashboard.png")

    page.goto(f"/projects/{project.pk}/quality/adjudication/")
    page.wait_for_selector("#adjudicate")
    page.keyboard.press("b")
    save(page, "adjudication.png")
    assert page.errors == []
    assert page.external_requests == []
