"""Who may sign in with a password: people only. Service accounts authenticate with their keys, nowhere else."""

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AbstractBaseUser

from annotation import permissions


class PeopleOnlyBackend(ModelBackend):
    """Django's password check, refusing service accounts on every form that signs in (the login page, the
    Django admin, the browsable API) and ending any session one might hold, even if a password was set."""

    def user_can_authenticate(self, user: AbstractBaseUser) -> bool:
        return super().user_can_authenticate(user) and not permissions.is_service_account(user)
