"""factory_boy factories for Docket's tables; tests build exactly the rows they need."""

import hashlib

import factory
from django.contrib.auth import get_user_model

from annotation.models import Annotation, AnnotationLabel, Document, Label, Membership, Project, Taxonomy

PASSWORD = "correct-horse-battery"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
    description = "Privacy review"
    multi_label = False
    # Overlap and gold checks route documents on purpose; tests that exercise them turn them on.
    overlap_rate = 0.0
    gold_rate = 0.0


class TaxonomyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Taxonomy

    project = factory.SubFactory(ProjectFactory)


class LabelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Label

    taxonomy = factory.SubFactory(TaxonomyFactory)
    key = factory.Sequence(lambda n: f"label_{n}")
    name = factory.LazyAttribute(lambda label: label.key.replace("_", " ").title())
    order = factory.Sequence(lambda n: n)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.REVIEWER


class DocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Document

    project = factory.SubFactory(ProjectFactory)
    text = factory.Sequence(lambda n: f"We share your device identifiers with analytics partner number {n}.")
    content_hash = factory.LazyAttribute(lambda d: hashlib.sha256(d.text.strip().encode()).hexdigest())
    external_id = factory.Sequence(lambda n: f"doc-{n}")


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation

    document = factory.SubFactory(DocumentFactory)
    reviewer = factory.SubFactory(UserFactory)

    @factory.post_generation
    def label_list(self, create, extracted, **kwargs):
        if create and extracted:
            AnnotationLabel.objects.bulk_create([AnnotationLabel(annotation=self, label=lab) for lab in extracted])


def project_with_labels(keys=("first_party", "third_party", "data_security"), *, multi_label=False, **kwargs):
    """A project with a taxonomy holding one label per key, shortcuts 1, 2, 3..."""
    project = ProjectFactory(multi_label=multi_label, **kwargs)
    taxonomy = TaxonomyFactory(project=project)
    for i, key in enumerate(keys):
        LabelFactory(taxonomy=taxonomy, key=key, order=i, shortcut=str(i + 1) if i < 9 else "")
    return project
