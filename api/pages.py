"""Key pages: project admins issue and revoke a project's API keys; every user manages their own personal
tokens on "My API tokens". A new key's secret is shown once, in the response that issued it."""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from annotation import permissions
from annotation.models import Membership, Taxonomy
from api import services
from api.exceptions import Conflict
from api.models import ApiKey, Scope
from api.services import IssuedKey


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses the key, e.g. intake-form.")
    kind = forms.ChoiceField(choices=ApiKey.Kind.choices, initial=ApiKey.Kind.SERVICE, widget=forms.RadioSelect)
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices, initial=[Scope.PREDICT], widget=forms.CheckboxSelectMultiple
    )
    role = forms.ChoiceField(
        choices=Membership.Role.choices,
        initial=Membership.Role.REVIEWER,
        help_text="Service keys: the service account's role if it is new to this project.",
    )
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Leave empty for a key that does not expire."
    )


def _keys(project):
    return ApiKey.objects.filter(projects=project).select_related("user").order_by("-created_at")


def _issue(request: HttpRequest, form: forms.Form, **key: Any) -> IssuedKey | None:
    """Issue a key from a valid form (name, scopes, expires_in_days); the service's refusals become form errors."""
    days = form.cleaned_data["expires_in_days"]
    try:
        return services.api_key_create(
            actor=request.user,
            name=form.cleaned_data["name"],
            scopes=form.cleaned_data["scopes"],
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            **key,
        )
    except ValidationError as error:
        for field, problems in error.message_dict.items():
            form.add_error(field if field in form.fields else None, problems)
        return None


def _revoke(request: HttpRequest, key: ApiKey) -> None:
    try:
        services.api_key_revoke(key=key, actor=request.user)
    except Conflict as error:
        messages.warning(request, str(error))
    else:
        messages.success(request, f"Revoked {key.name} ({key.prefix}). It no longer works.")


@login_required
def project_keys(request: HttpRequest, project_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_keys")
    issued = None
    form = KeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        issued = _issue(
            request, form, projects=[project], kind=form.cleaned_data["kind"], role=form.cleaned_data["role"]
        )
        if issued is not None:
            form = KeyForm()
    # The secret is rendered into this one response and never stored: no redirect, no message, no session.
    return render(
        request,
        "api/project_keys.html",
        {
            "project": project,
            "role": permissions.role_in(request.user, project),
            "taxonomy_version": Taxonomy.objects.filter(project=project).values_list("version", flat=True).first(),
            "tab": "keys",
            "keys": _keys(project),
            "form": form,
            "issued": issued,
        },
        status=201 if issued else 200,
    )


@login_required
@require_POST
def project_key_revoke(request: HttpRequest, project_id: int, key_id: int) -> HttpResponse:
    project = permissions.access_project_by_id(request.user, project_id, action="manage_keys")
    key = _keys(project).filter(pk=key_id).first()
    if key is None:
        raise Http404("No such key in this project.")
    _revoke(request, key)
    return redirect("api-pages:keys", project_id=project.pk)


class PersonalTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What you use it for, e.g. notebook or spreadsheet.")
    projects = forms.ModelMultipleChoiceField(
        queryset=None, widget=forms.CheckboxSelectMultiple, help_text="The token reaches these projects only."
    )
    scopes = forms.MultipleChoiceField(
        choices=Scope.choices,
        initial=[Scope.PREDICT, Scope.READ],
        widget=forms.CheckboxSelectMultiple,
        help_text="Reviewers may choose predict and read, lead reviewers also write (to resolve legal-review flags); "
        "admin needs the admin role in every project.",
    )
    expires_in_days = forms.IntegerField(
        min_value=1,
        max_value=3650,
        initial=90,
        required=False,
        help_text="Leave empty for a token that does not expire.",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        projects = permissions.projects_for(user).order_by("name")
        self.fields["projects"].queryset = projects
        only = list(projects[:2])
        if len(only) == 1:  # nothing to choose: a member of one project means that project
            self.fields["projects"].initial = [only[0].pk]


def _personal_tokens(user):
    return (
        ApiKey.objects.filter(user=user, kind=ApiKey.Kind.PERSONAL).prefetch_related("projects").order_by("-created_at")
    )


@login_required
def my_tokens(request: HttpRequest) -> HttpResponse:
    """Every user's own personal tokens: issue one for projects they belong to, see where it is used, revoke."""
    issued = None
    form = PersonalTokenForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        issued = _issue(request, form, projects=list(form.cleaned_data["projects"]), kind=ApiKey.Kind.PERSONAL)
        if issued is not None:
            form = PersonalTokenForm(user=request.user)
    return render(
        request,
        "api/my_tokens.html",
        {"keys": _personal_tokens(request.user), "form": form, "issued": issued},
        status=201 if issued else 200,
    )


@login_required
@require_POST
def my_token_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = _personal_tokens(request.user).filter(pk=key_id).first()
    if key is None:
        raise Http404("You have no such token.")
    _revoke(request, key)
    return redirect("my-tokens")
