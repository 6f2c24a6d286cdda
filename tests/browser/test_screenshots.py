"""Screenshots of the reviewer pages on realistic privacy-office data, for the docs and for looking at.

They land in test-artifacts/screenshots/; with DOCKET_SCREENSHOTS=docs they replace docs/img/*.png.
"""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Annotation, Document
from annotation.services.labeling import annotation_submit
from learning.models import ModelVersion, QueuePriority
from tests.browser.conftest import ARTIFACTS, ROOT, log_in
from tests.factories import PASSWORD, LabelFactory, MembershipFactory, ProjectFactory, TaxonomyFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LABELS = [
    (
        "first_party",
        "First Party Collection/Use",
        "#1f6f8b",
        "Use when the text says **we** collect, receive, infer or use personal data, and for what purpose.\n\n"
        "Example: *We use your location to show nearby stores.*",
    ),
    (
        "third_party",
        "Third Party Sharing/Collection",
        "#7a4f9a",
        "Use when data goes to, or is collected by, anyone other than the organisation: processors, ad networks, "
        "SDKs, affiliates, authorities.\n\nExample: *Our analytics provider receives your device identifier.*",
    ),
    (
        "user_choice",
        "User Choice/Control",
        "#2e7d4f",
        "Use when the text offers the person a choice or control: consent, opt-out links, privacy settings.\n\n"
        "Example: *You can turn off personalised ads in Settings.*",
    ),
    (
        "user_access",
        "User Access, Edit and Deletion",
        "#b5651d",
        "Use for rights to see, correct, export or delete one's data, and for data-subject requests about them.",
    ),
    (
        "data_retention",
        "Data Retention",
        "#8a6d1f",
        "Use when a period, schedule or condition for keeping or deleting data is stated.\n\n"
        "Example: *Call recordings are deleted after 90 days.*",
    ),
    (
        "data_security",
        "Data Security",
        "#a4492b",
        "Use for safeguards (encryption, access control, audits) and for **incidents that expose data**.\n\n"
        "Example: *A misconfigured bucket exposed export files for two hours.*",
    ),
    (
        "policy_change",
        "Policy Change",
        "#4f6d7a",
        "Use when the text is about changing the policy or notice and how people learn of it.",
    ),
    ("do_not_track", "Do Not Track", "#5c5c8a", "Use only when browser signals such as DNT or GPC are discussed."),
    (
        "specific_audiences",
        "International and Specific Audiences",
        "#2b6f6f",
        "Use for text aimed at a particular group (children, EU or California residents) or about international "
        "transfers.",
    ),
    ("other", "Other", "#777777", "Use when no other category fits: introductory text, contact information."),
]

INCIDENT = (
    "Summary: on 11 March 2026 between 09:40 and 11:55 UTC, a misconfigured export job in the Northwind Pay "
    "merchant dashboard wrote settlement reports for 212 merchants to a storage bucket that allowed public "
    "listing. The reports held merchant legal names, the last four digits of payout bank accounts and the email "
    "address of each merchant's primary contact. No cardholder data was included.\n\n"
    "Detection and containment: the bucket policy change was flagged by the cloud posture scanner at 11:32 UTC "
    "and the on-call engineer removed public access at 11:55 UTC. Access logs show two listing requests from an "
    "address range of a security research firm, which confirmed in writing that it deleted the files.\n\n"
    "Follow-up: affected merchants were notified on 13 March. The export job now writes to a private bucket with "
    "object-level encryption, and bucket policies are checked in CI before deployment. Legal assessed the "
    "incident as not notifiable to the supervisory authority; the assessment is attached to ticket SEC-4471."
)

DOCUMENTS = [
    (INCIDENT, "incident", "INC-2026-019: settlement reports in a publicly listable bucket", "Northwind Pay", "EU"),
    (
        "We share transaction details with the card networks, our issuing bank partner and the merchant's acquiring "
        "bank as needed to authorise, clear and settle each payment.",
        "policy_clause",
        "Northwind Pay Privacy Notice v4 (2026)",
        "Northwind Pay",
        "Global",
    ),
    (
        "Customer asks us to delete their Tandem account and every sleep recording, and to confirm in writing when "
        "it is done. Identity verified by the support agent through the app.",
        "data_request",
        "DSR ticket 88152",
        "Tandem",
        "EU",
    ),
    (
        "Review of the new 'nearby offers' feature: location is sampled every five minutes while the app is open. "
        "Recommend a clear opt-in screen and a retention limit of 30 days for raw location points.",
        "review_note",
        "Privacy review: Beacon nearby offers",
        "Beacon",
        "US",
    ),
    (
        "We keep support chat transcripts for 18 months after the conversation ends, then delete them.",
        "policy_clause",
        "Northwind Support Privacy Notice (2026)",
        "Northwind Support",
        "Global",
    ),
    (
        "You can switch off personalised recommendations at any time under Settings > Privacy; we then show you "
        "offers based only on the country you shop from.",
        "policy_clause",
        "Beacon Privacy Notice v2",
        "Beacon",
        "US",
    ),
    (
        "If we make material changes to this notice we will email you at least 30 days before they take effect.",
        "policy_clause",
        "Northwind Pay Privacy Notice v4 (2026)",
        "Northwind Pay",
        "Global",
    ),
    (
        "Children under 13 may not create a Tandem account; if we learn that one has, we delete it and its data.",
        "policy_clause",
        "Tandem Privacy Notice (2026)",
        "Tandem",
        "US",
    ),
    (
        "We honour the Global Privacy Control signal as a request to opt out of the sale or sharing of personal "
        "information for the browser that sends it.",
        "policy_clause",
        "Beacon Privacy Notice v2",
        "Beacon",
        "US",
    ),
    (
        "Merchant requests an export of all payout records we hold about their sole-trader account for the last "
        "three years.",
        "data_request",
        "DSR ticket 88160",
        "Northwind Pay",
        "UK",
    ),
]

EARLIER_ANSWERS = [
    (1, ["third_party"]),
    (2, ["user_access"]),
    (3, ["first_party", "user_choice", "data_retention"]),
    (4, ["data_retention"]),
    (5, ["user_choice"]),
]

INCIDENT_PROBABILITIES = {
    "first_party": 0.31,
    "third_party": 0.18,
    "user_choice": 0.03,
    "user_access": 0.06,
    "data_retention": 0.09,
    "data_security": 0.93,
    "policy_change": 0.02,
    "do_not_track": 0.01,
    "specific_audiences": 0.04,
    "other": 0.05,
}


def output_dir():
    if os.environ.get("DOCKET_SCREENSHOTS") == "docs":
        return ROOT / "docs" / "img"
    return ARTIFACTS / "screenshots"


def realistic_project():
    project = ProjectFactory(
        name="Northwind privacy review",
        description="Policy clauses, privacy-review notes, incident summaries and data-request tickets from "
        "Northwind Labs, labelled with the OPP-115 data-practice categories.",
        multi_label=True,
    )
    taxonomy = TaxonomyFactory(project=project)
    for order, (key, name, color, guideline) in enumerate(LABELS):
        LabelFactory(
            taxonomy=taxonomy,
            key=key,
            name=name,
            color=color,
            guideline=guideline,
            order=order,
            shortcut=str((order + 1) % 10),
        )
    documents = []
    for i, (text, kind, title, product, region) in enumerate(DOCUMENTS):
        documents.append(
            Document.objects.create(
                project=project,
                external_id=f"nw-{4100 + i}",
                text=text,
                content_hash=f"{i:064d}",
                metadata={"kind": kind, "source_title": title, "product": product, "region": region},
                random_key=0.1 + i / 100,
            )
        )
    reviewer = UserFactory(username="priya.r")
    MembershipFactory(project=project, user=reviewer)
    for index, keys in EARLIER_ANSWERS:
        annotation_submit(reviewer=reviewer, document=documents[index], label_keys=keys, seconds_spent=14.0)
    # One answer changed afterwards, so "My work" shows an edit.
    annotation_submit(reviewer=reviewer, document=documents[3], label_keys=["first_party", "user_choice"])
    Annotation.objects.filter(reviewer=reviewer).update(updated_at=timezone.now() - timedelta(minutes=7))
    QueuePriority.objects.create(
        document=documents[0], project=project, score=0.97, model_version=4, probabilities=INCIDENT_PROBABILITIES
    )
    for document in documents[6:]:
        QueuePriority.objects.create(
            document=document,
            project=project,
            score=0.4,
            model_version=4,
            probabilities={key: 0.1 for key, *_ in LABELS},
        )
    ModelVersion.objects.create(
        project=project,
        number=4,
        status=ModelVersion.Status.ACTIVE,
        kind=ModelVersion.Kind.FAST,
        taxonomy_version=1,
        label_keys=[key for key, *_ in LABELS],
        artifact_path="models/screenshot/v4",
        macro_f1=0.812,
    )
    return project, reviewer


def test_screenshots_of_the_reviewer_pages(new_page):
    project, reviewer = realistic_project()
    out = output_dir()
    out.mkdir(parents=True, exist_ok=True)
    page = new_page(viewport={"width": 1280, "height": 860})
    log_in(page, reviewer.username, PASSWORD)

    page.goto(f"/projects/{project.pk}/")
    page.screenshot(path=out / "project.png", full_page=True)

    page.goto(f"/projects/{project.pk}/label/")
    page.wait_for_selector("#workspace[data-mode=queue]")
    page.wait_for_selector("#save-status[data-pending='0']", state="attached")
    page.keyboard.press("1")  # the reviewer adds First Party to the model's Data Security suggestion
    page.hover(".label-choice[data-key=data_security]")
    page.screenshot(path=out / "labeling.png")

    page.goto(f"/projects/{project.pk}/my-work/")
    page.screenshot(path=out / "my-work.png", full_page=True)
    assert page.errors == [] and page.external_requests == []
