"""Who may sign in with a password, and how often they may get it wrong.

People only: service accounts authenticate with their keys, nowhere else. Repeated failures for one username from
one address lock that pair out for a while (django-axes), with a clear message and an audit event.
"""

from datetime import timedelta

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.backends import ModelBackend, UserModel
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from annotation import permissions, statements
from annotation.services.audit import audit_record


class PeopleOnlyBackend(ModelBackend):
    """Django's password check, refusing service accounts on every form that signs in (the login page, the
    Django admin, the browsable API) and ending any session one might hold, even if a password was set."""

    def user_can_authenticate(self, user: AbstractBaseUser) -> bool:
        return super().user_can_authenticate(user) and not permissions.is_service_account(user)

    def get_user(self, user_id):
        """The signed-in user of every request, with its service account (if any) in the same query: the check
        above asks for it on every request."""
        found = statements.prepared_objects(
            "sign_in.user", UserModel, _user_by_id, related=("service_account",), user_id=user_id
        )
        user = found[0] if found else None
        return user if user is not None and self.user_can_authenticate(user) else None


def _user_by_id(*, user_id):
    return UserModel._default_manager.filter(pk=user_id)


class SignInLockout(AxesStandaloneBackend):
    """Refuses a locked-out username and address before any password is checked.

    Every sign-in form passes the request; a call without one comes from code (a shell, a test's
    `client.login`), which has no address to lock and is left to the next backend.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def locked_out(request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """The answer to a sign-in attempt while its username and address are locked out (AXES_LOCKOUT_CALLABLE):
    a page that says so and for how long, status 429 with Retry-After, and an audit event for the office."""
    username = str((credentials or {}).get(settings.AXES_USERNAME_FORM_FIELD) or request.POST.get("username", ""))
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    minutes = max(1, int(cool_off.total_seconds() // 60))
    audit_record(
        action="sign_in.locked_out",
        actor_label=username[:200] or "unknown",
        after={
            "username": username[:200],
            "address": getattr(request, "axes_ip_address", "") or request.META.get("REMOTE_ADDR", ""),
            "path": request.path[:200],
            "failures": settings.AXES_FAILURE_LIMIT,
        },
    )
    response = render(
        request,
        "registration/locked_out.html",
        {"username": username, "minutes": minutes, "failures": settings.AXES_FAILURE_LIMIT},
        status=429,
    )
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
