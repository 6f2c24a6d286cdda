"""Fixtures of the learning-loop tests: a tiny labelled privacy data set and a project built from it."""

import hashlib
import time

import pytest

from annotation.models import Annotation, AnnotationLabel, AnnotationRevision, Document, Label
from tests.factories import UserFactory, project_with_labels

KEYS = ("first_party", "third_party", "data_security")

# Six short texts per label, plainly different, so a head on frozen MiniLM embeddings separates them.
LABELLED = {
    "first_party": [
        "We collect your name and email address when you create an account.",
        "The app records your location to show nearby stores.",
        "We use your purchase history to recommend products to you.",
        "Your phone number is collected when you sign up for alerts.",
        "We gather device information such as your operating system.",
        "We keep track of the pages you visit on our website.",
    ],
    "third_party": [
        "We share your personal data with advertising partners.",
        "Your information may be sold to marketing companies.",
        "Analytics providers receive your usage data from us.",
        "We disclose your details to affiliates for their own marketing.",
        "Third-party ad networks may place cookies on your device.",
        "Payment processors receive your card number to complete orders.",
    ],
    "data_security": [
        "All data is encrypted in transit with TLS and at rest with AES-256.",
        "Access to customer records is restricted to authorised staff.",
        "We run regular penetration tests on our systems.",
        "Passwords are stored as salted hashes, never in plain text.",
        "Our data centres are protected by firewalls and intrusion detection.",
        "Security incidents are reported to the authorities within 72 hours.",
    ],
}

POOL = [
    "We may collect the contents of messages you send to support.",
    "Partners receive a hashed copy of your email for ad matching.",
    "Backups are encrypted and stored in a separate region.",
    "We log your IP address each time you sign in.",
    "We sell aggregated data to research firms.",
    "Two-factor authentication protects administrator accounts.",
    "We read your contacts if you allow the app to find friends.",
    "Social media plugins send your browsing data to their operators.",
    "Employees complete security training every year.",
    "Cookies remember your language preference.",
    "Our vendors process data on our behalf under contract.",
    "Keys are rotated every ninety days.",
]


def make_document(project, text: str, *, status: str = Document.Status.QUEUED) -> Document:
    return Document.objects.create(
        project=project,
        text=text,
        content_hash=hashlib.sha256(text.encode()).hexdigest(),
        status=status,
    )


def label_document(document: Document, keys, reviewer) -> Annotation:
    """A reviewer's stored answer, as the labeling service leaves it (annotation, labels, revision)."""
    labels = list(Label.objects.filter(taxonomy__project=document.project, key__in=list(keys)))
    annotation = Annotation.objects.create(document=document, reviewer=reviewer)
    AnnotationLabel.objects.bulk_create([AnnotationLabel(annotation=annotation, label=label) for label in labels])
    AnnotationRevision.objects.create(
        annotation=annotation,
        label_keys=[label.key for label in labels],
        label_ids=[label.pk for label in labels],
        changed_by=reviewer,
        reason="create",
    )
    if document.status == Document.Status.QUEUED:
        document.status = Document.Status.LABELED
        document.save(update_fields=["status"])
    return annotation


def build_labelled_project(*, per_label: int = 6, pool: int = len(POOL), **project_options):
    """A project with `per_label` labelled documents per label and `pool` queued ones."""
    options = {"eval_fraction": 0.0, "fast_retrain_every": 5, "slow_retrain_every": 1000, **project_options}
    project = project_with_labels(KEYS, **options)
    reviewer = UserFactory()
    for key, texts in LABELLED.items():
        for text in texts[:per_label]:
            label_document(make_document(project, text), [key], reviewer)
    for text in POOL[:pool]:
        make_document(project, text)
    return project, reviewer


def wait_for(condition, *, timeout: float, what: str):
    """Poll until `condition()` is truthy and return its value; fail the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
