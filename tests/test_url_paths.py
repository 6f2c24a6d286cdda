"""Bookmarks keep working: every page's path and URL name answer as they did before the code was reorganised.

The table is what the routes were before review quality became its own app and the admin pages a package;
a path or name that changes, or a page that stops answering an admin's GET the same way, fails here.
"""

import pytest
from django.urls import resolve, reverse

from annotation.models import Membership
from tests.factories import DocumentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("artifact_dir")]

# (URL name, arguments, path, status of a project admin's GET). {p} is the project, {d} a document, {m} the
# admin's membership; 424242 stands for an object that does not exist.
ROUTES = [
    ("quality:dashboard", ["{p}"], "/projects/{p}/quality/", 200),
    ("quality:adjudication", ["{p}"], "/projects/{p}/quality/adjudication/", 200),
    ("quality:adjudicate", ["{p}", "{d}"], "/projects/{p}/quality/adjudication/{d}/", 405),
    ("quality:gold", ["{p}"], "/projects/{p}/quality/gold/", 200),
    ("quality:gold-remove", ["{p}", "{d}"], "/projects/{p}/quality/gold/remove/{d}/", 405),
    ("quality:settings", ["{p}"], "/projects/{p}/quality/settings/", 405),
    ("quality:label-errors", ["{p}"], "/projects/{p}/quality/label-errors/", 200),
    ("quality:send-back", ["{p}", "{d}"], "/projects/{p}/quality/label-errors/{d}/send-back/", 405),
    ("manage:project-create", [], "/projects/new/", 403),
    ("manage:set-password", ["abc", "set-password"], "/accounts/set-password/abc/set-password/", 200),
    ("manage:index", ["{p}"], "/projects/{p}/manage/", 200),
    ("manage:settings", ["{p}"], "/projects/{p}/manage/settings/", 200),
    ("manage:taxonomy", ["{p}"], "/projects/{p}/manage/taxonomy/", 200),
    ("manage:taxonomy-mode", ["{p}"], "/projects/{p}/manage/taxonomy/mode/", 405),
    ("manage:label-add", ["{p}"], "/projects/{p}/manage/taxonomy/labels/new/", 200),
    ("manage:label-edit", ["{p}", "first_party"], "/projects/{p}/manage/taxonomy/labels/first_party/", 200),
    ("manage:label-split", ["{p}", "first_party"], "/projects/{p}/manage/taxonomy/labels/first_party/split/", 200),
    (
        "manage:label-deprecate",
        ["{p}", "first_party"],
        "/projects/{p}/manage/taxonomy/labels/first_party/deprecate/",
        405,
    ),
    ("manage:label-delete", ["{p}", "first_party"], "/projects/{p}/manage/taxonomy/labels/first_party/delete/", 405),
    ("manage:label-move", ["{p}", "first_party"], "/projects/{p}/manage/taxonomy/labels/first_party/move/", 405),
    ("manage:merge", ["{p}"], "/projects/{p}/manage/taxonomy/merge/", 200),
    ("manage:taxonomy-import", ["{p}"], "/projects/{p}/manage/taxonomy/import/", 200),
    ("manage:taxonomy-export", ["{p}", "json"], "/projects/{p}/manage/taxonomy/export.json", 200),
    ("manage:versions", ["{p}"], "/projects/{p}/manage/taxonomy/versions/", 200),
    ("manage:version", ["{p}", 1], "/projects/{p}/manage/taxonomy/versions/1/", 404),
    ("manage:members", ["{p}"], "/projects/{p}/manage/members/", 200),
    ("manage:member-role", ["{p}", "{m}"], "/projects/{p}/manage/members/{m}/role/", 405),
    ("manage:member-remove", ["{p}", "{m}"], "/projects/{p}/manage/members/{m}/remove/", 405),
    ("manage:member-password-link", ["{p}", "{m}"], "/projects/{p}/manage/members/{m}/password-link/", 405),
    ("manage:import", ["{p}"], "/projects/{p}/manage/import/", 200),
    ("manage:import-batch", ["{p}", 424242], "/projects/{p}/manage/import/424242/", 404),
    ("manage:import-batch-status", ["{p}", 424242], "/projects/{p}/manage/import/424242/status", 404),
    ("manage:import-batch-rerun", ["{p}", 424242], "/projects/{p}/manage/import/424242/rerun/", 405),
    ("manage:export", ["{p}"], "/projects/{p}/manage/export/", 200),
    ("manage:documents-export", ["{p}", "jsonl"], "/projects/{p}/manage/export/documents.jsonl", 200),
    ("manage:audit", ["{p}"], "/projects/{p}/manage/audit/", 200),
    ("manage:audit-export", ["{p}", "csv"], "/projects/{p}/manage/audit/export.csv", 200),
    ("annotation:my-projects", [], "/", 200),
    ("annotation:project-detail", ["{p}"], "/projects/{p}/", 200),
    ("annotation:label", ["{p}"], "/projects/{p}/label/", 200),
    ("annotation:my-work", ["{p}"], "/projects/{p}/my-work/", 200),
    ("annotation:legal-review", ["{p}"], "/projects/{p}/legal-review/", 200),
    ("learning:models", ["{p}"], "/projects/{p}/models/", 200),
    ("learning:status", ["{p}"], "/projects/{p}/models/status/", 200),
]


@pytest.fixture
def values(project, project_admin):
    document = DocumentFactory(project=project)
    membership = Membership.objects.get(project=project, user=project_admin)
    return {"{p}": project.pk, "{d}": document.pk, "{m}": membership.pk}


def _fill(value, values: dict) -> object:
    return values.get(value, value) if isinstance(value, str) else value


@pytest.mark.parametrize(("name", "args", "path", "status"), ROUTES, ids=[route[0] for route in ROUTES])
def test_old_paths_and_names_answer_as_before(client, project_admin, values, name, args, path, status):
    args = [_fill(arg, values) for arg in args]
    for placeholder, value in values.items():
        path = path.replace(placeholder, str(value))
    assert reverse(name, args=args) == path
    assert resolve(path).view_name == name
    client.force_login(project_admin)
    assert client.get(path).status_code == status
