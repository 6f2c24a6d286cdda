"""Who may do what. The one place the pages, the admin upload and the API ask before touching a project."""

from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import F, OuterRef, QuerySet, Subquery

from annotation import statements
from annotation.exceptions import NotAllowed, ProjectNotFound
from annotation.models import Document, ImportBatch, Membership, Project

Role = Membership.Role

# What each role may do. Admins can do everything reviewers can.
REVIEWER_ACTIONS = frozenset({"view", "label", "export_own", "own_token"})
ADMIN_ACTIONS = REVIEWER_ACTIONS | frozenset(
    {"manage_settings", "manage_members", "manage_taxonomy", "import", "export", "manage_models", "manage_keys"}
    | {"view_audit"}
    # Review quality: the dashboard, adjudicating disputes, gold answers, sending documents back.
    | {"view_quality", "adjudicate", "manage_gold", "view_answers"}
    | {"resolve_flags"}
    | {"bulk_label"}
    # Webhooks: which systems hear of the project's events, and their signing secrets.
    | {"manage_webhooks"}
)
# Lead reviewers label, read the quality figures, settle disputes and resolve flags for legal review (both are
# decisions on one document's content; docs/admin-guide.md says why no separate legal role); the taxonomy,
# people, imports, models, keys and gold answers stay with admins.
LEAD_ACTIONS = REVIEWER_ACTIONS | frozenset(
    {"view_quality", "adjudicate", "resolve_flags", "view_answers", "bulk_label"}
)
# "bulk_label": label many documents at once from Explore, undo such a batch, put documents at the front of the
# queue. Reviewers may too where the project's `reviewers_bulk_label` setting says so (see `can`).
# "view_answers": read other people's answers (final labels, gold answers, colleagues' annotations). Reviewers
# never may: gold checks and designed overlap only measure anything while the reviewer answers blind.
ACTIONS_BY_ROLE = {Role.REVIEWER: REVIEWER_ACTIONS, Role.LEAD: LEAD_ACTIONS, Role.ADMIN: ADMIN_ACTIONS}

# API scopes a member may put on a personal token of their own, by role. A token never does more than its
# owner's role allows either way; this keeps a reviewer from holding a token that only looks like more.
PERSONAL_TOKEN_SCOPES = {
    Role.REVIEWER: frozenset({"predict", "read"}),
    Role.LEAD: frozenset({"predict", "read", "write"}),  # write: to resolve flags from another system
    Role.ADMIN: frozenset({"predict", "read", "write", "admin"}),
}


def role_in(user: AbstractBaseUser | AnonymousUser, project: Project) -> str | None:
    """The user's role in the project; superusers act as admins everywhere."""
    if not user.is_authenticated:
        return None
    if user.is_superuser:
        return Role.ADMIN
    # Read with the project (projects_for, access_project_by_id, access_document_by_id), for this user.
    if getattr(project, "member_user_id", None) == user.pk:
        return project.member_role
    return Membership.objects.filter(project=project, user=user).values_list("role", flat=True).first()


def role_allows(role: str | None, action: str) -> bool:
    """Whether a role may do `action`; templates ask it as `role|allows:"action"` to show only what works."""
    return role is not None and action in ACTIONS_BY_ROLE.get(role, frozenset())


def can(user: AbstractBaseUser | AnonymousUser, project: Project, action: str) -> bool:
    role = role_in(user, project)
    if action == "bulk_label" and role == Role.REVIEWER:
        return project.reviewers_bulk_label
    return role_allows(role, action)


def personal_token_scopes(user: AbstractBaseUser | AnonymousUser, project: Project) -> frozenset[str]:
    """Scopes the user may give a personal token for the project (none for a non-member)."""
    role = role_in(user, project)
    return PERSONAL_TOKEN_SCOPES[role] if role_allows(role, "own_token") else frozenset()


def is_service_account(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Whether the account is automation's (api.models.ServiceAccount, reached through its reverse accessor:
    annotation never imports the API). Such an account signs in nowhere and only its own project's keys act as it.
    """
    return bool(user.is_authenticated and hasattr(user, "service_account"))


def may_set_credentials(actor: AbstractBaseUser | AnonymousUser, user: AbstractBaseUser, project: Project) -> bool:
    """Whether `actor` may hand `user` a set-password link from `project`'s people page.

    One project's admin must never be able to become someone of another project. So a project admin may only
    for an account that their own invitation to this project created, that has never signed in, has no password
    yet and belongs to no other project. Superusers may for any person without a password yet. Service accounts
    never get a password; everyone else resets their own.
    """
    if not actor.is_authenticated or is_service_account(user) or user.has_usable_password():
        return False
    if actor.is_superuser:
        return True
    if not can(actor, project, "manage_members") or user.is_staff or user.is_superuser or user.last_login is not None:
        return False
    # Both read through the user's relations, so that a page of members can bring them with its one query
    # (`select_related("user__invitation")`, `prefetch_related("user__memberships")`).
    invitation = getattr(user, "invitation", None)
    if invitation is None or invitation.project_id != project.pk or invitation.invited_by_id != actor.pk:
        return False
    return all(membership.project_id == project.pk for membership in user.memberships.all())


def can_create_projects(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Creating a project is for Docket staff and superusers; the creator then becomes its admin."""
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def projects_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    """Projects the user may see: those where they are a member (all of them for superusers).

    Each comes with the user's role, over the membership join that already limits the list, so that a page of
    projects asking `role_in` or `can` for each asks the database once, not once per project."""
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    memberships = Project.objects.filter(memberships__user=user)
    return memberships.annotate(member_role=F("memberships__role"), member_user_id=F("memberships__user"))


def _project_with_role(*, project_id: int, user_id: int) -> QuerySet[Project]:
    # The role comes with the project, over the membership join that already limits it to the user's.
    projects = Project.objects.filter(memberships__user=user_id).filter(pk=project_id)
    return projects.annotate(member_role=F("memberships__role"))


def _document_with_role(*, project_id: int, document_id: int, user_id: int) -> QuerySet[Document]:
    role = Membership.objects.filter(project=OuterRef("project"), user=user_id).values("role")[:1]
    return Document.objects.filter(project_id=project_id, pk=document_id).annotate(member_role=Subquery(role))


def access_project_by_id(
    user: AbstractBaseUser | AnonymousUser,
    project_id: int,
    *,
    action: str = "view",
    columns: dict[str, Any] | Callable[..., dict[str, Any]] | None = None,
    compiled_as: str | None = None,
    column_values: dict[str, Any] | None = None,
) -> Project:
    """The project if the user may do `action` in it.

    A non-member gets ProjectNotFound, exactly as for a project that does not exist, so ids cannot be probed.
    A member whose role lacks the action gets NotAllowed. `columns` are annotations read with the project in
    the same query (what a caller would otherwise ask right after).

    `compiled_as`: a name under which the query is compiled once (annotation.statements); `columns` is then a
    function of `column_values` (ints, such as a key's id) that gives the same expressions every time.
    """
    if compiled_as is not None and user.is_authenticated:
        found = _compiled_project(user, project_id, compiled_as, columns, column_values or {})
        project = found[0] if found else None
    elif user.is_authenticated and not user.is_superuser and not columns:
        # Every page and call asks this first: compiled once (annotation.statements).
        found = statements.prepared_objects(
            "permissions.project_with_role",
            Project,
            _project_with_role,
            extra=("member_role",),
            project_id=project_id,
            user_id=user.pk,
        )
        project = found[0] if found else None
    else:
        project = projects_for(user).filter(pk=project_id).annotate(**(columns or {})).first()
    if project is None:
        raise ProjectNotFound("No such project, or you are not a member of it.")
    if hasattr(project, "member_role"):
        project.member_user_id = user.pk
    if not can(user, project, action):
        raise NotAllowed(f"Your role in {project.name} does not allow this ({action}).")
    return project


# The annotations' names per compiled statement, learned from its `columns` function the first time.
_column_names: dict[str, tuple[str, ...]] = {}


def _compiled_project(
    user: AbstractBaseUser, project_id: int, name: str, columns: Callable[..., dict[str, Any]], values: dict[str, Any]
) -> list[Project]:
    superuser = bool(user.is_superuser)

    def build(*, project_id: int, user_id: int, superuser: bool, **values: Any) -> QuerySet[Project]:
        if superuser:
            projects = Project.objects.filter(pk=project_id)
        else:
            projects = _project_with_role(project_id=project_id, user_id=user_id)
        return projects.annotate(**columns(**values))

    names = _column_names.get(name)
    if names is None:
        names = _column_names[name] = tuple(columns(**values))
    return statements.prepared_objects(
        name,
        Project,
        build,
        extra=names if superuser else (*names, "member_role"),
        project_id=project_id,
        user_id=user.pk,
        superuser=superuser,
        **values,
    )


def access_document_by_id(
    user: AbstractBaseUser | AnonymousUser, project_id: int, document_id: int, *, action: str = "view"
) -> Document:
    """A document of a project the user may act in; another project's document id is simply not found.

    The document, its project and the user's role in it come in one query (every submission asks); when
    there is no such document, the project is checked on its own so the answer is the same as before: a
    non-member or a role without the action learns nothing about the document.
    """
    document = None
    if user.is_authenticated and not user.is_superuser:
        found = statements.prepared_objects(
            "permissions.document_with_role",
            Document,
            _document_with_role,
            related=("project",),
            extra=("member_role",),
            project_id=project_id,
            document_id=document_id,
            user_id=user.pk,
        )
        document = found[0] if found else None
    elif user.is_authenticated:
        document = Document.objects.filter(project_id=project_id, pk=document_id).select_related("project").first()
    if document is None or (not user.is_superuser and document.member_role is None):
        access_project_by_id(user, project_id, action=action)  # raises for a non-member or a role without it
        raise ProjectNotFound("No such document in this project.")
    project = document.project
    if hasattr(document, "member_role"):
        project.member_role, project.member_user_id = document.member_role, user.pk
    if not can(user, project, action):
        raise NotAllowed(f"Your role in {project.name} does not allow this ({action}).")
    return document


def access_import_batch_by_id(
    user: AbstractBaseUser | AnonymousUser, project_id: int, batch_id: int, *, action: str = "import"
) -> ImportBatch:
    """An import of a project the user may import into; another project's import is simply not found."""
    project = access_project_by_id(user, project_id, action=action)
    batch = ImportBatch.objects.filter(project=project, pk=batch_id).select_related("created_by").first()
    if batch is None:
        raise ProjectNotFound("No such import in this project.")
    batch.project = project
    return batch
