"""The project admin pages: who may open them, and what each form does through the services."""

import types

import pytest
from django.urls import reverse

from annotation.models import AnnotationLabel, AuditEvent, Document, Label, Membership, Project, TaxonomyVersion
from annotation.services import taxonomy
from tests.factories import PASSWORD, AnnotationFactory, DocumentFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


# Every admin page a GET opens: (url name, extra arguments).
PAGES = [
    ("manage:index", {}),
    ("manage:taxonomy", {}),
    ("manage:label-add", {}),
    ("manage:label-edit", {"key": "first_party"}),
    ("manage:label-split", {"key": "first_party"}),
    ("manage:merge", {}),
    ("manage:taxonomy-import", {}),
    ("manage:taxonomy-export", {"fmt": "yaml"}),
    ("manage:versions", {}),
    ("manage:version", {"number": 2}),
    ("manage:members", {}),
    ("manage:settings", {}),
    ("manage:audit", {}),
    ("manage:audit-export", {"fmt": "csv"}),
]
# Every admin action a POST performs; a reviewer is refused each one and nothing changes.
ACTIONS = [
    ("manage:label-deprecate", {"key": "first_party"}, {}),
    ("manage:label-delete", {"key": "data_security"}, {}),
    ("manage:label-move", {"key": "third_party"}, {"direction": "up"}),
    ("manage:taxonomy-mode", {}, {"multi_label": "1"}),
    ("manage:label-add", {}, {"key": "x", "name": "X", "color": "#000000"}),
    (
        "manage:merge",
        {},
        {"sources": ["first_party", "third_party"], "into": "existing", "target": "first_party", "apply": "1"},
    ),
    ("manage:members", {}, {"identifier": "someone@example.org", "role": "admin"}),
    ("manage:settings", {}, {"name": "Taken over", "lease_ttl_seconds": "60", "query_strategy": "random"}),
]


@pytest.fixture
def admin(project):
    user = UserFactory()
    MembershipFactory(project=project, user=user, role="admin")
    taxonomy.label_add(project=project, actor=user, key="other", name="Other")  # versions 1 and 2
    return user


def url(project, name, kwargs):
    return reverse(name, kwargs={"project_id": project.pk, **kwargs})


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)


def page_user(role, project):
    if role == "admin":
        return Membership.objects.get(project=project, role="admin").user
    if role == "reviewer":
        return Membership.objects.get(project=project, role="reviewer").user
    if role == "superuser":
        return UserFactory(is_superuser=True, is_staff=True)
    return UserFactory()  # a member of no project


@pytest.mark.parametrize("name, kwargs", PAGES, ids=[p[0] for p in PAGES])
@pytest.mark.parametrize(
    "role, status", [("admin", 200), ("superuser", 200), ("reviewer", 403), ("non-member", 404), ("anonymous", 302)]
)
def test_admin_pages_by_role(client, project, admin, reviewer, name, kwargs, role, status):
    if role != "anonymous":
        login(client, page_user(role, project))
    response = client.get(url(project, name, kwargs))
    assert response.status_code == status
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name, kwargs, data", ACTIONS, ids=[a[0] for a in ACTIONS])
def test_reviewers_are_refused_every_admin_action_and_nothing_changes(
    client, project, admin, reviewer, name, kwargs, data
):
    login(client, reviewer)
    before = (taxonomy.taxonomy_labels(project.taxonomy), Membership.objects.count())
    assert client.post(url(project, name, kwargs), data).status_code == 403
    assert (taxonomy.taxonomy_labels(project.taxonomy), Membership.objects.count()) == before


@pytest.mark.parametrize("name, kwargs, data", ACTIONS[:4], ids=[a[0] for a in ACTIONS[:4]])
def test_non_members_are_told_the_project_does_not_exist(client, project, admin, name, kwargs, data):
    login(client, UserFactory())
    assert client.post(url(project, name, kwargs), data).status_code == 404


@pytest.mark.parametrize("flags, status", [({"is_staff": True}, 200), ({}, 403)])
def test_the_new_project_page_is_for_staff(client, flags, status):
    login(client, UserFactory(**flags))
    assert client.get(reverse("manage:project-create")).status_code == status


def test_the_new_project_page_sends_anonymous_visitors_to_log_in(client):
    assert client.get(reverse("manage:project-create"))["Location"].startswith(reverse("login"))


def test_staff_creates_a_project_from_the_template_and_becomes_its_admin(client):
    staff = UserFactory(is_staff=True)
    login(client, staff)
    response = client.post(
        reverse("manage:project-create"),
        {"name": "Vendor contracts", "description": "", "multi_label": "1", "start": "opp115"},
    )
    project = Project.objects.get(name="Vendor contracts")
    assert response["Location"] == url(project, "manage:taxonomy", {})
    assert project.multi_label and Membership.objects.get(project=project, user=staff).role == "admin"
    assert project.taxonomy.labels.count() == 10


def test_staff_creates_a_project_from_a_yaml_file(client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    login(client, UserFactory(is_staff=True))
    upload = SimpleUploadedFile("t.yaml", b"labels:\n  - {key: a, name: A, children: [{key: b, name: B}]}\n")
    client.post(
        reverse("manage:project-create"),
        {"name": "From file", "multi_label": "0", "start": "file", "file": upload},
    )
    labels = Label.objects.filter(taxonomy__project__name="From file")
    assert labels.get(key="b").parent.key == "a"


# --- The taxonomy editor ---------------------------------------------------------------------------------------


def test_adding_a_child_label_with_a_shortcut(client, project, admin):
    login(client, admin)
    response = client.post(
        url(project, "manage:label-add", {}),
        {"key": "ads", "name": "Ad networks", "parent": "third_party", "shortcut": "a", "color": "#aa3300"},
    )
    assert response.status_code == 302
    ads = Label.objects.get(taxonomy__project=project, key="ads")
    assert (ads.parent.key, ads.shortcut, ads.color) == ("third_party", "a", "#aa3300")
    page = client.get(url(project, "manage:taxonomy", {})).content.decode()
    assert 'id="label-ads"' in page and 'data-depth="1"' in page


def test_a_clashing_shortcut_is_explained_on_the_form(client, project, admin):
    login(client, admin)
    response = client.post(
        url(project, "manage:label-add", {}), {"key": "ads", "name": "Ads", "shortcut": "1", "color": "#000000"}
    )
    assert response.status_code == 200
    assert "already belongs to" in response.content.decode()
    assert not Label.objects.filter(key="ads").exists()


def test_renaming_from_the_edit_page(client, project, admin):
    login(client, admin)
    client.post(
        url(project, "manage:label-edit", {"key": "first_party"}),
        {
            "name": "Collection by us",
            "parent": "",
            "shortcut": "1",
            "color": "#4f6d7a",
            "description": "",
            "guideline": "",
        },
    )
    assert Label.objects.get(taxonomy__project=project, key="first_party").name == "Collection by us"
    assert TaxonomyVersion.objects.filter(taxonomy=project.taxonomy, operation="rename").exists()


def test_guidelines_render_as_markdown_with_html_escaped(client, project, admin):
    Label.objects.filter(key="first_party").update(guideline="Use **we**. <script>alert(1)</script>")
    login(client, admin)
    page = client.get(url(project, "manage:label-edit", {"key": "first_party"})).content.decode()
    assert "<strong>we</strong>" in page and "<script>alert(1)</script>" not in page


def test_deleting_a_used_label_from_the_page_is_refused_with_a_pointer(client, project, admin):
    AnnotationFactory(document=DocumentFactory(project=project), label_list=[Label.objects.get(key="first_party")])
    login(client, admin)
    response = client.post(url(project, "manage:label-delete", {"key": "first_party"}), follow=True)
    page = response.content.decode()
    assert "cannot be deleted" in page and "Deprecate it" in page and "merge it" in page
    assert Label.objects.filter(key="first_party").exists()


def test_the_label_page_previews_what_its_operations_touch(client, project, admin):
    AnnotationFactory(document=DocumentFactory(project=project), label_list=[Label.objects.get(key="first_party")])
    login(client, admin)
    page = client.get(url(project, "manage:label-edit", {"key": "first_party"})).content.decode()
    assert "<b>1</b> annotation on <b>1</b> document" in page


def test_merge_shows_a_preview_before_it_applies(client, project, admin):
    annotation = AnnotationFactory(
        document=DocumentFactory(project=project), label_list=[Label.objects.get(key="third_party")]
    )
    login(client, admin)
    form = {"sources": ["first_party", "third_party"], "into": "new", "new_key": "parties", "new_name": "Parties"}
    preview = client.post(url(project, "manage:merge", {}), {**form, "preview": "1"})
    assert preview.status_code == 200 and 'id="merge-preview"' in preview.content.decode()
    assert "<b>1</b> annotation on <b>1</b> document will be moved" in preview.content.decode()
    assert not Label.objects.filter(key="parties").exists()  # nothing applied yet
    client.post(url(project, "manage:merge", {}), {**form, "apply": "1"})
    assert list(AnnotationLabel.objects.filter(annotation=annotation).values_list("label__key", flat=True)) == [
        "parties"
    ]


def test_split_previews_the_requeue_then_applies_it(client, project, admin):
    document = DocumentFactory(project=project, status=Document.Status.LABELED)
    AnnotationFactory(document=document, label_list=[Label.objects.get(key="third_party")])
    login(client, admin)
    form = {
        "part-TOTAL_FORMS": "2",
        "part-INITIAL_FORMS": "0",
        "part-MIN_NUM_FORMS": "2",
        "part-MAX_NUM_FORMS": "10",
        "part-0-key": "processors",
        "part-0-name": "Processors",
        "part-1-key": "advertisers",
        "part-1-name": "Advertisers",
    }
    split_url = url(project, "manage:label-split", {"key": "third_party"})
    preview = client.post(split_url, {**form, "preview": "1"}).content.decode()
    assert "<b>1</b> labeled document go back to the queue" in preview and 'id="apply-split"' in preview
    client.post(split_url, {**form, "apply": "1"})
    document.refresh_from_db()
    assert document.status == Document.Status.QUEUED and "split" in document.rereview_reason


def test_importing_pasted_yaml(client, project, admin):
    login(client, admin)
    text = "labels:\n  - key: retention\n    name: Data retention\n    shortcut: r\n"
    response = client.post(url(project, "manage:taxonomy-import", {}), {"text": text, "format": "yaml"}, follow=True)
    assert "1 label(s) added" in response.content.decode()
    assert Label.objects.get(taxonomy__project=project, key="retention").shortcut == "r"


def test_an_invalid_import_shows_the_problems_and_changes_nothing(client, project, admin):
    login(client, admin)
    text = '{"labels": [{"key": "a", "name": "A", "parent": "nowhere"}]}'
    response = client.post(url(project, "manage:taxonomy-import", {}), {"text": text, "format": "json"})
    assert response.status_code == 200 and "neither in the file nor the taxonomy" in response.content.decode()
    assert not Label.objects.filter(key="a").exists()


def test_exporting_the_taxonomy_as_a_yaml_download(client, project, admin):
    login(client, admin)
    response = client.get(url(project, "manage:taxonomy-export", {"fmt": "yaml"}))
    assert response["Content-Disposition"].endswith('-v2.yaml"')
    assert "key: first_party" in response.content.decode()


def test_the_version_page_shows_where_old_keys_lead_now(client, project, admin):
    taxonomy.labels_merge(
        project=project, actor=admin, source_keys=["first_party", "third_party"], target_key="parties", target_name="P"
    )
    login(client, admin)
    page = client.get(url(project, "manage:version", {"number": 1})).content.decode()
    assert "<code>parties</code>" in page
    history = client.get(url(project, "manage:versions", {})).content.decode()
    assert "Labels merged" in history and "<code>first_party</code> + <code>third_party</code>" in history


def test_the_taxonomy_page_says_when_the_model_is_outdated(client, project, admin, monkeypatch):
    import learning.selectors

    model = types.SimpleNamespace(pk=1, number=4, taxonomy_version=1)
    monkeypatch.setattr(learning.selectors, "active_model_version", lambda p: model, raising=False)
    login(client, admin)
    page = client.get(url(project, "manage:taxonomy", {})).content.decode()
    assert 'id="model-outdated"' in page and "trained on taxonomy v1" in page
    model.taxonomy_version = 2
    assert 'id="model-current"' in client.get(url(project, "manage:taxonomy", {})).content.decode()


# --- People ----------------------------------------------------------------------------------------------------


def test_adding_a_new_person_shows_their_set_password_link(client, project, admin):
    login(client, admin)
    response = client.post(
        url(project, "manage:members", {}), {"identifier": "kim@privacy.example", "role": "reviewer"}, follow=True
    )
    page = response.content.decode()
    assert "Created the account kim" in page and "http://testserver/accounts/set-password/" in page


def test_the_last_admin_is_kept_with_a_message(client, project, admin):
    login(client, admin)
    membership = Membership.objects.get(project=project, user=admin)
    response = client.post(
        url(project, "manage:member-role", {"membership_id": membership.pk}), {"role": "reviewer"}, follow=True
    )
    assert "last admin" in response.content.decode()
    membership.refresh_from_db()
    assert membership.role == "admin"


def test_another_projects_membership_is_not_found(client, project, admin):
    other = MembershipFactory()
    login(client, admin)
    response = client.post(url(project, "manage:member-remove", {"membership_id": other.pk}))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=other.pk).exists()


def test_role_change_from_the_page_is_audited(client, project, admin, reviewer):
    login(client, admin)
    membership = Membership.objects.get(project=project, user=reviewer)
    client.post(url(project, "manage:member-role", {"membership_id": membership.pk}), {"role": "admin"})
    assert AuditEvent.objects.get(action="membership.role_changed").after == {
        "user": reviewer.username,
        "role": "admin",
    }


def test_a_member_without_a_password_can_get_a_new_link_and_only_from_an_admin(client, project, admin, reviewer):
    from annotation.services.members import member_add

    added = member_add(project=project, actor=admin, identifier="lee@privacy.example")
    link_url = url(project, "manage:member-password-link", {"membership_id": added.membership.pk})
    login(client, reviewer)
    assert client.post(link_url).status_code == 403
    login(client, admin)
    page = client.post(link_url, follow=True).content.decode()
    assert "Send lee this link" in page and "http://testserver/accounts/set-password/" in page
    has_password = Membership.objects.get(project=project, user=reviewer)
    page = client.post(url(project, "manage:member-password-link", {"membership_id": has_password.pk}), follow=True)
    assert f"You cannot set a password for {reviewer.username}" in page.content.decode()


def settings_form(project, **changes):
    data = {
        "name": project.name,
        "description": project.description,
        "lease_ttl_seconds": project.lease_ttl_seconds,
        "query_strategy": project.query_strategy,
        "fast_retrain_every": project.fast_retrain_every,
        "slow_retrain_every": project.slow_retrain_every,
        "eval_fraction": project.eval_fraction,
        "promotion_policy": project.promotion_policy,
    }
    return {**data, **changes}


def test_admin_changes_settings_audited_and_a_new_strategy_lays_out_the_queue(
    client, project, admin, django_capture_on_commit_callbacks
):
    login(client, admin)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url(project, "manage:settings", {}),
            settings_form(project, lease_ttl_seconds="300", query_strategy="margin", fast_retrain_every="25"),
            follow=True,
        )
    assert "Settings saved." in response.content.decode()
    project.refresh_from_db()
    assert (project.lease_ttl_seconds, project.query_strategy, project.fast_retrain_every) == (300, "margin", 25)
    event = AuditEvent.objects.get(action="project.updated", project=project)
    assert event.before == {
        "lease_ttl_seconds": 600,
        "query_strategy": "diverse_rare_uncertainty",
        "fast_retrain_every": 10,
    }
    assert event.after == {"lease_ttl_seconds": 300, "query_strategy": "margin", "fast_retrain_every": 25}
    assert len(callbacks) == 1  # the queue is rescored under the new strategy once the change commits

    with django_capture_on_commit_callbacks() as callbacks:
        client.post(url(project, "manage:settings", {}), settings_form(project, fast_retrain_every="30"))
    assert callbacks == [] and AuditEvent.objects.filter(action="project.updated").count() == 2


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eval_fraction": "0.9"}, "less than or equal to 0.5"),
        ({"lease_ttl_seconds": "5"}, "greater than or equal to 30"),
        ({"query_strategy": "clairvoyant"}, "Select a valid choice"),
        ({"name": "Someone else's"}, "already exists"),
    ],
)
def test_invalid_settings_say_why_and_change_nothing(client, project, admin, changes, message):
    Project.objects.create(name="Someone else's")
    login(client, admin)
    before = Project.objects.filter(pk=project.pk).values().get()
    response = client.post(url(project, "manage:settings", {}), settings_form(project, **changes))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Project.objects.filter(pk=project.pk).values().get() == before
    assert not AuditEvent.objects.filter(action="project.updated").exists()


def test_a_reviewer_cannot_change_settings(client, project, admin, reviewer):
    login(client, reviewer)
    before = Project.objects.filter(pk=project.pk).values().get()
    assert client.post(url(project, "manage:settings", {}), settings_form(project, name="Mine")).status_code == 403
    assert Project.objects.filter(pk=project.pk).values().get() == before
