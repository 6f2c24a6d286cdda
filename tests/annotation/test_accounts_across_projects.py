"""Accounts across projects: one project's admin can never become someone of another project.

The first tests follow the outside review's takeover (finding 1) step by step, for a service account and for an
invited person; the others pin the rule behind it and the per-project service-account names (finding 9).
"""

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from annotation import permissions
from annotation.models import AuditEvent, Invitation, Membership
from annotation.services.members import member_add, set_password_path
from api import services
from api.models import ApiKey, ServiceAccount
from tests.factories import PASSWORD, MembershipFactory, UserFactory, project_with_labels

pytestmark = pytest.mark.django_db

User = get_user_model()
NEW_PASSWORD = "attacker-chosen-passphrase"


@pytest.fixture
def two_projects():
    """Projects A and B, each with its own admin; B has a service key (intake-b) and has invited carol."""
    a, b = project_with_labels(name="Project A"), project_with_labels(name="Project B")
    admin_a, admin_b = UserFactory(username="admin-a"), UserFactory(username="admin-b")
    MembershipFactory(project=a, user=admin_a, role="admin")
    MembershipFactory(project=b, user=admin_b, role="admin")
    as_b = Client()
    as_b.force_login(admin_b)
    # Admin of B creates a service key (account intake-b) on B's keys page ...
    response = as_b.post(
        f"/projects/{b.pk}/keys/", {"name": "intake-b", "kind": "service", "scopes": ["read"], "role": "admin"}
    )
    assert response.status_code == 201
    token = re.search(r"dk_[0-9a-f]+_[\w-]+", response.content.decode()).group(0)
    # ... and invites carol@b.example on B's people page.
    as_b.post(f"/projects/{b.pk}/manage/members/", {"identifier": "carol@b.example", "role": "reviewer"})
    carol = User.objects.get(email="carol@b.example")
    service_user = ServiceAccount.objects.get(name="intake-b").user
    return {"a": a, "b": b, "admin_a": admin_a, "admin_b": admin_b, "carol": carol, "svc": service_user, "token": token}


def _signed_in(client: Client, username: str, password: str) -> bool:
    client.post("/accounts/login/", {"username": username, "password": password})
    return "_auth_user_id" in client.session


def _reads_b(client: Client, b) -> list[int]:
    """What the review's attacker read of B once signed in: members, keys, audit log, the annotations export."""
    urls = [
        f"/projects/{b.pk}/manage/members/",
        f"/projects/{b.pk}/keys/",
        f"/projects/{b.pk}/manage/audit/",
        f"/api/v1/projects/{b.pk}/annotations/export",
    ]
    return [client.get(url).status_code for url in urls]


def _attack(two_projects, identifier: str) -> Client:
    """Admin of A adds `identifier` to A, asks for a password link, sets a password and signs in with it."""
    a = two_projects["a"]
    as_a = Client()
    as_a.force_login(two_projects["admin_a"])
    as_a.post(f"/projects/{a.pk}/manage/members/", {"identifier": identifier, "role": "reviewer"})
    membership = Membership.objects.filter(project=a, user__username__iexact=identifier).first()
    membership = membership or Membership.objects.filter(project=a, user__email__iexact=identifier).first()
    if membership is not None:
        response = as_a.post(f"/projects/{a.pk}/manage/members/{membership.pk}/password-link/", follow=True)
        links = re.findall(r"/accounts/set-password/[\w-]+/[\w-]+/", response.content.decode())
        for link in links:
            attacker = Client()
            form = attacker.get(link, follow=True)
            attacker.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    return as_a


def test_admin_of_another_project_cannot_take_over_a_service_account(two_projects):
    svc, a, b = two_projects["svc"], two_projects["a"], two_projects["b"]
    as_a = _attack(two_projects, svc.username)

    assert not Membership.objects.filter(project=a, user=svc).exists(), "a service account joined another project"
    page = as_a.get(f"/projects/{a.pk}/manage/members/").content.decode()
    assert svc.username not in page
    svc.refresh_from_db()
    assert not svc.has_usable_password()
    attacker = Client()
    assert not _signed_in(attacker, svc.username, NEW_PASSWORD)
    assert all(status in (302, 401, 403, 404) for status in _reads_b(attacker, b))


def test_admin_of_another_project_cannot_take_over_an_invited_person(two_projects):
    carol, a, b = two_projects["carol"], two_projects["a"], two_projects["b"]
    as_a = _attack(two_projects, "carol@b.example")

    # Adding an existing person by email is allowed (people work on several projects) but gives A no power.
    assert Membership.objects.filter(project=a, user=carol).exists()
    carol.refresh_from_db()
    assert not carol.has_usable_password()
    attacker = Client()
    assert not _signed_in(attacker, carol.username, NEW_PASSWORD)
    assert all(status in (302, 401, 403, 404) for status in _reads_b(attacker, b))
    assert "password-link" not in as_a.get(f"/projects/{a.pk}/manage/members/").content.decode()
    refused = AuditEvent.objects.get(action="membership.password_link_refused")
    assert refused.project == a and refused.actor == two_projects["admin_a"]


def test_the_inviting_admin_still_sends_a_link_that_works(two_projects):
    """The rule still lets the admin whose invitation created an untouched account help it set a password."""
    b, carol = two_projects["b"], two_projects["carol"]
    as_b = Client()
    as_b.force_login(two_projects["admin_b"])
    membership = Membership.objects.get(project=b, user=carol)
    response = as_b.post(f"/projects/{b.pk}/manage/members/{membership.pk}/password-link/", follow=True)
    link = re.search(r"/accounts/set-password/[\w-]+/[\w-]+/", response.content.decode()).group(0)
    person = Client()
    form = person.get(link, follow=True)
    person.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert _signed_in(Client(), carol.username, NEW_PASSWORD)


def test_a_link_stops_working_when_the_account_joins_another_project(two_projects):
    carol, a = two_projects["carol"], two_projects["a"]
    link = set_password_path(carol)  # what B's admin sent carol
    member_add(project=a, actor=two_projects["admin_a"], identifier="carol@b.example")
    assert "no longer works" in Client().get(link, follow=True).content.decode()


@pytest.mark.parametrize(
    "case",
    ["other_admin_of_the_project", "signed_in_once", "member_elsewhere", "existing_account", "service_account"],
)
def test_who_a_project_admin_may_set_credentials_for(case):
    project, other = project_with_labels(name="Here"), project_with_labels(name="Elsewhere")
    inviter, colleague = UserFactory(), UserFactory()
    MembershipFactory(project=project, user=inviter, role="admin")
    MembershipFactory(project=project, user=colleague, role="admin")
    invited = member_add(project=project, actor=inviter, identifier="new@here.example").membership.user
    assert permissions.may_set_credentials(inviter, invited, project)
    actor, user = inviter, invited
    if case == "other_admin_of_the_project":
        actor = colleague
    elif case == "signed_in_once":
        Client().force_login(invited)
        invited.refresh_from_db()
    elif case == "member_elsewhere":
        MembershipFactory(project=other, user=invited)
    elif case == "existing_account":
        user = UserFactory()
        user.set_unusable_password()
        user.save()
        member_add(project=project, actor=inviter, identifier=user.username)
    elif case == "service_account":
        services.api_key_create(
            actor=inviter, projects=[project], name="bot", scopes=["read"], kind="service", role="reviewer"
        )
        user = ServiceAccount.objects.get(project=project, name="bot").user
    assert not permissions.may_set_credentials(actor, user, project)


def test_an_invitation_records_who_invited_the_account_to_which_project(project):
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    added = member_add(project=project, actor=admin, identifier="someone@new.example")
    invitation = Invitation.objects.get(user=added.membership.user)
    assert (invitation.project, invitation.invited_by) == (project, admin)
    existing = member_add(project=project, actor=admin, identifier=UserFactory().username)
    assert not Invitation.objects.filter(user=existing.membership.user).exists()


# --- Service accounts sign in nowhere -----------------------------------------------------------------------


@pytest.fixture
def service_user_with_password(project):
    admin = UserFactory()
    MembershipFactory(project=project, user=admin, role="admin")
    services.api_key_create(actor=admin, projects=[project], name="bot", scopes=["read"], kind="service")
    user = ServiceAccount.objects.get(name="bot").user
    user.is_staff = True  # even a staff flag set by mistake must not open the Django admin
    user.set_password(PASSWORD)  # a password set by some other way than Docket's pages
    user.save()
    return user


def test_a_service_account_cannot_sign_in_on_the_login_page(service_user_with_password):
    assert not _signed_in(Client(), service_user_with_password.username, PASSWORD)


def test_a_service_account_cannot_sign_in_to_the_django_admin(service_user_with_password):
    client = Client()
    client.post("/admin/login/", {"username": service_user_with_password.username, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302


def test_a_service_account_has_no_session_in_the_api(service_user_with_password, project):
    client = Client()
    assert not client.login(username=service_user_with_password.username, password=PASSWORD)
    client.force_login(service_user_with_password)  # a session that somehow exists is not honoured
    assert client.get(f"/api/v1/projects/{project.pk}").status_code in (401, 403)
    assert client.get(f"/projects/{project.pk}/label/").status_code == 302


def test_the_set_password_page_refuses_a_service_account(service_user_with_password):
    service_user_with_password.set_unusable_password()
    service_user_with_password.save()
    response = Client().get(set_password_path(service_user_with_password), follow=True)
    assert "no longer works" in response.content.decode()


# --- Service-account names belong to their project (finding 9) -------------------------------------------


def test_a_service_account_name_of_another_project_makes_a_new_account(two_projects):
    a, b, admin_a = two_projects["a"], two_projects["b"], two_projects["admin_a"]
    issued = services.api_key_create(
        actor=admin_a, projects=[a], name="intake-b", scopes=["read", "write"], kind="service", role="reviewer"
    )
    assert issued.key.user != two_projects["svc"]
    assert ServiceAccount.objects.get(user=issued.key.user).project == a
    assert not Membership.objects.filter(project=b, user=issued.key.user).exists()
    assert not Membership.objects.filter(project=a, user=two_projects["svc"]).exists()
    created = AuditEvent.objects.filter(project=a, action="api_key.created").latest("id")
    assert created.after["user"] == issued.key.user.username != two_projects["svc"].username


def test_a_service_key_covers_one_project_only(two_projects):
    a, admin_a = two_projects["a"], two_projects["admin_a"]
    second = project_with_labels(name="Project A2")
    MembershipFactory(project=second, user=admin_a, role="admin")
    with pytest.raises(Exception, match="one project"):
        services.api_key_create(actor=admin_a, projects=[a, second], name="both", scopes=["read"], kind="service")


def test_a_service_key_never_acts_outside_its_accounts_project(two_projects):
    """Older data may list a service account in two projects; its key still acts only in its own."""
    a, b, svc = two_projects["a"], two_projects["b"], two_projects["svc"]
    Membership.objects.create(project=a, user=svc, role="admin")
    key = ApiKey.objects.get(user=svc)
    key.projects.add(a)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {two_projects['token']}")
    assert client.get(f"/api/v1/projects/{a.pk}").status_code == 404
    assert client.get(f"/api/v1/projects/{b.pk}").status_code == 200
    assert [p["id"] for p in client.get("/api/v1/projects").json()["results"]] == [b.pk]
