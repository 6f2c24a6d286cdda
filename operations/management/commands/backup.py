"""manage.py backup DIR: the database and the artifact store, consistent with each other (operations/backup.py)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from operations.backup import BackupFailed, backup_create


class Command(BaseCommand):
    help = "Back up the database (pg_dump) and the artifact store into a new directory, consistently."

    def add_arguments(self, parser):
        parser.add_argument("destination", type=Path, help="a new directory, e.g. /backups/docket/2026-12-04")

    def handle(self, *args, destination: Path, **options):
        try:
            result = backup_create(destination=destination)
        except BackupFailed as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Backed up to {result.directory}: database {result.database_bytes:,} bytes, "
            f"{result.artifact_files} artifact files ({result.artifact_bytes:,} bytes), "
            f"{result.model_versions} model versions"
        )
        if result.missing_caches:
            self.stdout.write(
                f"{len(result.missing_caches)} embedding caches were merged away during the backup; "
                "restore drops their rows and they are rebuilt when needed."
            )
