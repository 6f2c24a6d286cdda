"""manage.py restore DIR: a backup into an empty database and an empty artifact directory."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from operations.backup import RestoreRefused, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a `manage.py backup` directory into the configured database and artifact directory, both "
        "empty. Give the restored installation its own broker and cache (docs/deploy.md)."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", type=Path, help="a directory written by `manage.py backup`")

    def handle(self, *args, source: Path, **options):
        try:
            result = backup_restore(source=source)
        except RestoreRefused as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Restored the backup of {result['created_at']}: {result['model_versions']} model versions, "
            f"{result['artifact_files']} artifact files; run `manage.py migrate` if this code is newer."
        )
