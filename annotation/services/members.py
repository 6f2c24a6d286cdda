"""Project people: adding (and, when new, creating) users, setting roles, removing members, never the last admin."""

import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotation import permissions
from annotation.exceptions import AlreadyMember, LastAdmin, NotAllowed, ProjectNotFound
from annotation.models import Invitation, Membership, Project
from annotation.services.audit import audit_record

Role = Membership.Role


@dataclass(frozen=True)
class MemberAdded:
    membership: Membership
    created_user: bool
    # Where a new user sets their first password; empty for existing users.
    set_password_path: str


class InvitationTokenGenerator(PasswordResetTokenGenerator):
    """Django's password-reset token, also bound to the projects the account belongs to.

    Like Django's, a link stops working once a password is set or the account signs in; on top of that it
    stops working the moment the account joins another project, when it is no longer one admin's to hand out.
    """

    key_salt = "docket.invitation"

    def _make_hash_value(self, user: AbstractBaseUser, timestamp: int) -> str:
        projects = sorted(Membership.objects.filter(user=user).values_list("project_id", flat=True))
        return f"{super()._make_hash_value(user, timestamp)}|{','.join(map(str, projects))}"


invitation_tokens = InvitationTokenGenerator()

# Service accounts are named svc-...; people's accounts never are, so the prefix alone refuses such an
# identifier, with the same answer whether or not the account exists.
SERVICE_ACCOUNT_PREFIX = "svc-"
SERVICE_ACCOUNT_REFUSAL = (
    "Service accounts cannot be added as members: each belongs to the project that issued its key. "
    "Issue a key in this project instead."
)


def set_password_path(user: AbstractBaseUser) -> str:
    """A one-time link for a user to choose a password; it expires with PASSWORD_RESET_TIMEOUT and stops
    working once a password is set, the account signs in, or it joins another project."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return reverse("manage:set-password", args=[uid, invitation_tokens.make_token(user)])


def password_link_for(*, project: Project, actor: AbstractBaseUser, membership: Membership) -> str:
    """A fresh set-password link for a member, if `actor` may set that member's credentials at all.

    Only for an account the actor's own invitation created, that has never signed in and belongs to no other
    project (see permissions.may_set_credentials); anyone else resets their own password, or a superuser helps.
    """
    user = membership.user
    if not permissions.may_set_credentials(actor, user, project):
        audit_record(
            action="membership.password_link_refused",
            actor=actor,
            project=project,
            target=membership,
            after={"user": user.get_username()},
        )
        raise NotAllowed(
            f"You cannot set a password for {user.get_username()}. A project admin can only send a password link "
            "to an account their own invitation created, before it first signs in and while it belongs to no "
            "other project. They can reset their own password from the sign-in page, or a Docket superuser can help."
        )
    audit_record(
        action="membership.password_link_issued",
        actor=actor,
        project=project,
        target=membership,
        after={"user": user.get_username()},
    )
    return set_password_path(user)


def _find_user(identifier: str) -> AbstractBaseUser | None:
    User = get_user_model()
    if identifier.lower().startswith(SERVICE_ACCOUNT_PREFIX):
        raise ValidationError(SERVICE_ACCOUNT_REFUSAL)
    user = User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": identifier}).first()
    if user is not None or "@" not in identifier:
        return user
    matches = list(User.objects.filter(email__iexact=identifier)[:2])
    if len(matches) > 1:
        raise ValidationError(f"Several accounts use {identifier}; add the person by username instead.")
    return matches[0] if matches else None


def _free_username(base: str) -> str:
    User = get_user_model()
    base = re.sub(r"[^\w.@+-]", "", base)[:140] or "user"
    candidate, n = base, 1
    while User.objects.filter(**{f"{User.USERNAME_FIELD}__iexact": candidate}).exists():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def _create_user(identifier: str) -> AbstractBaseUser:
    """A new account with no usable password: the person chooses one through the set-password link."""
    User = get_user_model()
    if "@" in identifier:
        validate_email(identifier)
        user = User(username=_free_username(identifier.split("@", 1)[0]), email=identifier)
    else:
        user = User(username=identifier)
    user.set_unusable_password()
    user.full_clean()
    user.save()
    return user


@transaction.atomic
def member_add(*, project: Project, actor: AbstractBaseUser, identifier: str, role: str = Role.REVIEWER) -> MemberAdded:
    """Add a person by username or email; one Docket does not know yet gets an account and a set-password link.

    Adding an account that exists already (a person working on several projects) gives this project access to
    nobody's credentials: no password link, no reset, no keys. Service accounts are never added this way.
    """
    identifier = identifier.strip()
    if not identifier:
        raise ValidationError("Give a username or an email address.")
    if role not in Role.values:
        raise ValidationError(f"Role must be one of: {', '.join(Role.values)}.")
    user = _find_user(identifier)
    created = user is None
    if created:
        user = _create_user(identifier)
        Invitation.objects.create(user=user, project=project, invited_by=actor)
    elif permissions.is_service_account(user):
        raise ValidationError(SERVICE_ACCOUNT_REFUSAL)
    existing = Membership.objects.filter(project=project, user=user).first()
    if existing is not None:
        raise AlreadyMember(
            f"{user.get_username()} is already a member of {project.name} ({existing.get_role_display()}); "
            "change their role in the list instead."
        )
    membership = Membership(project=project, user=user, role=role)
    membership.full_clean()
    membership.save()
    audit_record(
        action="membership.created",
        actor=actor,
        project=project,
        target=membership,
        after={"user": user.get_username(), "role": role, "new_account": created},
    )
    return MemberAdded(
        membership=membership, created_user=created, set_password_path=set_password_path(user) if created else ""
    )


def _lock_admins(project: Project) -> list[int]:
    """The project's admin memberships, locked: two admins demoting each other at once cannot both win."""
    return list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Role.ADMIN)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _refuse_last_admin(membership: Membership, admins: list[int], what: str) -> None:
    if membership.role == Role.ADMIN and admins == [membership.pk]:
        raise LastAdmin(
            f"{membership.user.get_username()} is the last admin of {membership.project.name}, so they cannot be "
            f"{what}. Make someone else an admin first."
        )


@transaction.atomic
def member_set_role(*, membership: Membership, actor: AbstractBaseUser, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError(f"Role must be one of: {', '.join(Role.values)}.")
    admins = _lock_admins(membership.project)
    membership = Membership.objects.select_for_update().select_related("user", "project").get(pk=membership.pk)
    if membership.role == role:
        return membership
    if role != Role.ADMIN:
        _refuse_last_admin(membership, admins, "made a reviewer")
    before = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        action="membership.role_changed",
        actor=actor,
        project=membership.project,
        target=membership,
        before={"user": membership.user.get_username(), "role": before},
        after={"user": membership.user.get_username(), "role": role},
    )
    return membership


@transaction.atomic
def member_remove(*, membership: Membership, actor: AbstractBaseUser) -> None:
    """Take someone out of a project. Their annotations stay (and stay theirs); only access goes."""
    admins = _lock_admins(membership.project)
    membership = Membership.objects.select_for_update().select_related("user", "project").get(pk=membership.pk)
    _refuse_last_admin(membership, admins, "removed")
    audit_record(
        action="membership.removed",
        actor=actor,
        project=membership.project,
        target=membership,
        before={"user": membership.user.get_username(), "role": membership.role},
    )
    membership.delete()


def membership_for(project: Project, membership_id: int) -> Membership:
    """A membership of this project; another project's membership id is not found."""
    membership = Membership.objects.filter(project=project, pk=membership_id).select_related("user").first()
    if membership is None:
        raise ProjectNotFound("No such member in this project.")
    return membership
