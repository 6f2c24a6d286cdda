"""The demo loads in one command, twice without harm."""

import pytest
from django.core.management import call_command

from annotation.management.commands.load_demo import DEMO_PROJECT
from annotation.models import Annotation, Document, Label, Membership, Project

pytestmark = pytest.mark.django_db


def test_demo_loads_project_taxonomy_documents_gold_labels_and_users(capsys):
    call_command("load_demo")
    call_command("load_demo")
    project = Project.objects.get(name=DEMO_PROJECT)
    assert Label.objects.filter(taxonomy__project=project).count() == 10
    assert Document.objects.filter(project=project).count() >= 300
    assert Annotation.objects.filter(document__project=project, source="import").count() >= 100
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {"admin": "admin", "reviewer1": "reviewer", "reviewer2": "reviewer"}
    out = capsys.readouterr().out
    assert "reviewer1" in out and "docket-review" in out
    assert "already loaded" in out
