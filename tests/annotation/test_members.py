"""Project people: adding by username or email, new accounts with a set-password link, roles, the last admin."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from annotation import permissions
from annotation.exceptions import AlreadyMember, LastAdmin
from annotation.models import AuditEvent, Membership
from annotation.services.members import member_add, member_remove, member_set_role
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


User = get_user_model()


@pytest.fixture
def admin_membership(project):
    return MembershipFactory(project=project, user=UserFactory(), role="admin")


@pytest.fixture
def admin(admin_membership):
    return admin_membership.user


def test_an_existing_user_is_added_by_username_case_insensitively(project, admin):
    person = UserFactory(username="Dana")
    added = member_add(project=project, actor=admin, identifier="dana", role="reviewer")
    assert added.membership.user == person and not added.created_user and added.set_password_path == ""
    assert permissions.role_in(person, project) == "reviewer"


def test_an_existing_user_is_added_by_email(project, admin):
    person = UserFactory(email="ana@privacy.example")
    added = member_add(project=project, actor=admin, identifier="ANA@privacy.example", role="admin")
    assert added.membership.user == person and added.membership.role == "admin"


def test_a_new_email_creates_an_account_without_a_password_and_a_working_set_password_link(client, project, admin):
    added = member_add(project=project, actor=admin, identifier="new.person@privacy.example")
    user = added.membership.user
    assert added.created_user and user.username == "new.person" and user.email == "new.person@privacy.example"
    assert not user.has_usable_password()
    assert added.set_password_path.startswith("/accounts/set-password/")
    # The link leads to a form; Django moves the token into the session and redirects once.
    response = client.get(added.set_password_path, follow=True)
    assert response.status_code == 200 and "Choose your password" in response.content.decode()
    form_url = response.redirect_chain[-1][0]
    response = client.post(
        form_url, {"new_password1": "a-long-new-passphrase", "new_password2": "a-long-new-passphrase"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("a-long-new-passphrase")
    # Used once, the link no longer works.
    assert "no longer works" in client.get(added.set_password_path, follow=True).content.decode()


def test_a_new_username_creates_that_account(project, admin):
    added = member_add(project=project, actor=admin, identifier="legal-team")
    assert added.created_user and added.membership.user.username == "legal-team"


def test_a_taken_username_from_an_email_gets_a_number(project, admin):
    UserFactory(username="sam", email="sam@one.example")
    added = member_add(project=project, actor=admin, identifier="sam@two.example")
    assert added.membership.user.username == "sam2"


def test_an_invalid_email_is_refused_and_creates_nobody(project, admin):
    before = User.objects.count()
    with pytest.raises(ValidationError):
        member_add(project=project, actor=admin, identifier="not an@email")
    assert User.objects.count() == before


def test_adding_a_member_twice_is_refused(project, admin, reviewer):
    with pytest.raises(AlreadyMember, match="already a member"):
        member_add(project=project, actor=admin, identifier=reviewer.username, role="admin")


def test_adding_records_who_added_whom(project, admin):
    member_add(project=project, actor=admin, identifier="new@privacy.example", role="reviewer")
    event = AuditEvent.objects.get(action="membership.created")
    assert event.actor == admin and event.after == {"user": "new", "role": "reviewer", "new_account": True}


def test_role_change_is_recorded_with_before_and_after(project, admin, reviewer):
    membership = Membership.objects.get(project=project, user=reviewer)
    member_set_role(membership=membership, actor=admin, role="admin")
    assert permissions.can(reviewer, project, "manage_taxonomy")
    event = AuditEvent.objects.get(action="membership.role_changed")
    assert event.before["role"] == "reviewer" and event.after["role"] == "admin" and event.actor == admin


def test_the_last_admin_cannot_be_made_a_reviewer(project, admin_membership):
    with pytest.raises(LastAdmin, match="last admin"):
        member_set_role(membership=admin_membership, actor=admin_membership.user, role="reviewer")
    admin_membership.refresh_from_db()
    assert admin_membership.role == "admin"


def test_the_last_admin_cannot_be_removed(project, admin_membership):
    with pytest.raises(LastAdmin):
        member_remove(membership=admin_membership, actor=admin_membership.user)
    assert Membership.objects.filter(pk=admin_membership.pk).exists()


def test_an_admin_can_step_down_once_there_is_another(project, admin_membership, reviewer):
    other = Membership.objects.get(project=project, user=reviewer)
    member_set_role(membership=other, actor=admin_membership.user, role="admin")
    member_set_role(membership=admin_membership, actor=admin_membership.user, role="reviewer")
    with pytest.raises(LastAdmin):
        member_remove(membership=other, actor=other.user)


def test_removing_a_member_takes_away_access_and_is_recorded(project, admin, reviewer):
    member_remove(membership=Membership.objects.get(project=project, user=reviewer), actor=admin)
    assert permissions.role_in(reviewer, project) is None
    assert AuditEvent.objects.get(action="membership.removed").before == {"user": reviewer.username, "role": "reviewer"}


@pytest.mark.parametrize(
    "flags, allowed", [({}, False), ({"is_staff": True}, True), ({"is_superuser": True, "is_staff": True}, True)]
)
def test_only_staff_and_superusers_may_create_projects(flags, allowed):
    assert permissions.can_create_projects(UserFactory(**flags)) is allowed
