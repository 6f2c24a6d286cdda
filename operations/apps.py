from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """What an operator runs Docket with: health, readiness, metrics, request logs, backups."""

    name = "operations"
    verbose_name = "Operations"
