"""Taxonomy files are read with limits: YAML aliases are refused (not expanded), sizes and nesting are capped,
and each field must have its type, so `key: 5` or `name: [a, b]` is an error, not text stored."""

import pytest
from django.urls import reverse

from annotation.exceptions import TaxonomyInvalid
from annotation.models import Label, Project, TaxonomyVersion
from annotation.services import taxonomy
from tests.factories import PASSWORD, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

# 400 bytes that expand to half a million characters: the review's file, in spirit.
ALIAS_BOMB = """
a: &a "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
labels:
  - key: bomb
    name: Bomb
    description: *d
"""


@pytest.fixture
def admin(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="admin")
    return user


def labels_and_versions(project):
    return list(Label.objects.filter(taxonomy__project=project).values_list("key", "description")), (
        TaxonomyVersion.objects.filter(taxonomy__project=project).count()
    )


def test_yaml_aliases_are_refused_not_expanded():
    with pytest.raises(TaxonomyInvalid, match="alias"):
        taxonomy.taxonomy_parse(ALIAS_BOMB, fmt="yaml")


def test_a_merge_key_is_an_alias_too():
    text = "base: &base {color: '#112233'}\nlabels:\n  - <<: *base\n    key: a\n    name: A\n"
    with pytest.raises(TaxonomyInvalid, match="alias"):
        taxonomy.taxonomy_parse(text, fmt="yaml")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_deep_nesting_is_refused_not_a_recursion_error(fmt):
    text = "labels: " + "[" * 5000 + "]" * 5000 if fmt == "yaml" else '{"labels": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(TaxonomyInvalid, match="nested too deeply"):
        taxonomy.taxonomy_parse(text, fmt=fmt)


def test_an_oversized_file_is_refused_before_it_is_parsed():
    text = "labels: []\n# " + "x" * taxonomy.TAXONOMY_MAX_BYTES
    with pytest.raises(TaxonomyInvalid, match="at most"):
        taxonomy.taxonomy_parse(text, fmt="yaml")


def test_nul_in_a_taxonomy_file_is_refused():
    with pytest.raises(TaxonomyInvalid, match="NUL"):
        taxonomy.taxonomy_parse('{"labels": [{"key": "a", "name": "A\\u0000"}]}', fmt="json")


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{key: 5, name: Five}", "key must be text"),
        ("{key: a, name: [a, b]}", "name must be text"),
        ("{key: a, name: A, deprecated: 'yes'}", "deprecated must be true or false"),
        ("{key: a, name: A, order: '3'}", "order must be a whole number"),
        ("{key: a, name: A, parent: 7}", "parent must be text"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_and_nothing_changes(project, admin, line, problem):
    before = labels_and_versions(project)
    data = taxonomy.taxonomy_parse(f"labels:\n  - {line}\n", fmt="yaml")
    with pytest.raises(TaxonomyInvalid, match=problem):
        taxonomy.taxonomy_import(project=project, actor=admin, data=data)
    assert labels_and_versions(project) == before


def test_over_long_texts_are_refused(project, admin):
    before = labels_and_versions(project)
    data = {"labels": [{"key": "long", "name": "Long", "description": "x" * 10_001}]}
    with pytest.raises(TaxonomyInvalid, match="description is 10,001 characters"):
        taxonomy.taxonomy_import(project=project, actor=admin, data=data)
    data = {"labels": [{"key": "long", "name": "n" * 201}]}
    with pytest.raises(TaxonomyInvalid, match="name is 201 characters"):
        taxonomy.taxonomy_import(project=project, actor=admin, data=data)
    assert labels_and_versions(project) == before


def test_too_many_labels_are_refused(project, admin):
    data = {"labels": [{"key": f"k{i}", "name": f"K{i}"} for i in range(taxonomy.TAXONOMY_MAX_LABELS + 1)]}
    with pytest.raises(TaxonomyInvalid, match="at most"):
        taxonomy.taxonomy_import(project=project, actor=admin, data=data)


def test_a_label_description_over_the_limit_is_refused_by_every_service(project, admin):
    with pytest.raises(TaxonomyInvalid, match="At most 10,000"):
        taxonomy.label_add(project=project, actor=admin, key="x", name="X", description="d" * 10_001)
    label = Label.objects.filter(taxonomy__project=project).first()
    with pytest.raises(TaxonomyInvalid, match="At most 50,000"):
        taxonomy.label_update(label=label, actor=admin, guideline="g" * 50_001)


def test_the_import_page_shows_the_alias_refusal_as_a_form_error(client, project, admin):
    client.login(username=admin.username, password=PASSWORD)
    before = labels_and_versions(project)
    response = client.post(reverse("manage:taxonomy-import", args=[project.pk]), {"text": ALIAS_BOMB, "format": "yaml"})
    assert response.status_code == 200
    assert "alias" in response.content.decode()
    assert labels_and_versions(project) == before


def test_the_new_project_page_refuses_an_alias_file(client):
    staff = UserFactory(is_staff=True)
    client.login(username=staff.username, password=PASSWORD)
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("taxonomy.yaml", ALIAS_BOMB.encode())
    response = client.post(
        reverse("manage:project-create"),
        {"name": "Bombed", "description": "", "multi_label": "0", "start": "file", "file": upload},
    )
    assert response.status_code == 200 and "alias" in response.content.decode()
    assert not Project.objects.filter(name="Bombed").exists()
