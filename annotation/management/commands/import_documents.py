"""python manage.py import_documents PROJECT FILE: stream a file (Docket's CSV, JSONL or text, Label Studio,
doccano, Prodigy, Parquet, or a Hugging Face dataset directory) into a project."""

import os
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.exceptions import ImportRejected
from annotation.models import ImportBatch, Project
from annotation.services.imports import ImportOptions, file_head, import_batch_create, import_batch_run


def project_by_name_or_id(value: str) -> Project:
    project = Project.objects.filter(pk=int(value)).first() if value.isdigit() else None
    project = project or Project.objects.filter(name=value).first()
    if project is None:
        raise CommandError(f"No project with id or name '{value}'.")
    return project


class Command(BaseCommand):
    help = (
        "Import documents into a project: CSV, JSONL, text, Label Studio JSON, doccano or Prodigy JSONL, Parquet, "
        "or a Hugging Face dataset directory. Labels, when present, become annotations."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("file")
        parser.add_argument("--text-field", default="text")
        parser.add_argument("--id-field", default="id")
        parser.add_argument("--label-field", default="labels", help="column with label keys; '' for none")
        parser.add_argument(
            "--format", choices=ImportBatch.Format.values, help="default: told from the file's content and extension"
        )
        parser.add_argument("--user", help="username recorded as the importer")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        with ExitStack() as cleanup:
            path = options["file"]
            if os.path.isdir(path):
                path = cleanup.enter_context(_zipped_dataset_directory(path))
            elif not os.path.isfile(path):
                raise CommandError(f"No such file or directory: {options['file']}")
            self._import(project, path, options)

    def _import(self, project, path, options):
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user '{options['user']}'.")
        import_options = ImportOptions(
            text_field=options["text_field"],
            id_field=options["id_field"],
            label_field=options["label_field"] or None,
            format=options["format"],
        )
        bar = tqdm(
            total=os.path.getsize(path),
            unit="B",
            unit_scale=True,
            desc=os.path.basename(path),
            disable=options["no_progress"],
            file=self.stderr._out,
        )

        def progress(consumed: int) -> None:
            bar.update(consumed - bar.n)

        try:
            batch = import_batch_create(
                project=project, file_name=path, options=import_options, user=user, head=file_head(path)
            )
        except ImportRejected as error:
            raise CommandError(str(error)) from error
        try:
            with open(path, "rb") as stream:
                import_batch_run(batch=batch, stream=stream, progress=progress)
        except ImportRejected as error:
            raise CommandError(str(error)) from error
        except Exception as error:
            # The batch is marked failed with the line it stopped near; that one line is what the person needs
            # (--traceback shows the rest).
            batch.refresh_from_db()
            raise CommandError(f"{batch.error} (import batch {batch.pk})") from error
        finally:
            bar.close()
        self.stdout.write(
            f"{batch.created_count:,} documents imported, {batch.duplicate_count:,} duplicates skipped, "
            f"{batch.rejected_count:,} rows rejected, {batch.annotation_count:,} labels imported "
            f"(import batch {batch.pk})."
        )
        errors = list(batch.row_errors.all()[:50])
        for error in errors:
            self.stdout.write(f"  line {error.line}: {error.reason}")
        if batch.rejected_count > len(errors):
            self.stdout.write(
                f"  ... and {batch.rejected_count - len(errors):,} more in the admin (import batch {batch.pk})."
            )


class _zipped_dataset_directory:
    """A `save_to_disk` directory as the zip an upload would carry (stored, not compressed: Arrow files
    barely shrink), in a temporary file removed afterwards."""

    def __init__(self, directory: str):
        self.directory = Path(directory)

    def __enter__(self) -> str:
        if not (self.directory / "state.json").is_file():
            raise CommandError(f"{self.directory} is a directory but not a dataset saved with save_to_disk.")
        handle, self.path = tempfile.mkstemp(prefix="docket-dataset-", suffix=".zip")
        os.close(handle)
        with zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED) as archive:
            for file in sorted(self.directory.iterdir()):
                if file.is_file():
                    archive.write(file, f"{self.directory.name}/{file.name}")
        return self.path

    def __exit__(self, *exc_info) -> None:
        os.unlink(self.path)
