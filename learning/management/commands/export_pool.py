"""python manage.py export_pool PROJECT --out DIR [--reembedding]

Writes the project's documents (Docket's document id, external id, text) as Parquet files under DIR/documents,
a few tens of thousands per file, for the Spark embedding job (learning/ml/spark_embedding.py, docs/scale.md).
With --reembedding, only the documents a waiting fine-tune still needs, and its new body under DIR/body.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_documents import project_by_name_or_id
from learning.exceptions import NoReembeddingWaiting
from learning.services import pool_export
from learning.services.embedding_imports import EXPORT_ROWS


class Command(BaseCommand):
    help = "Export a project's documents (id and text, Parquet in parts) for embedding on Spark."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--out", required=True, type=Path, help="directory to create (must not exist or be empty)")
        parser.add_argument(
            "--reembedding",
            action="store_true",
            help="only what the fine-tune waiting for Spark still needs, with its body under DIR/body",
        )
        parser.add_argument("--rows-per-file", type=int, default=EXPORT_ROWS)

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        try:
            result = pool_export(
                project=project,
                out_dir=options["out"],
                reembedding=options["reembedding"],
                rows_per_file=options["rows_per_file"],
            )
        except (NoReembeddingWaiting, FileExistsError) as error:
            raise CommandError(str(error)) from error
        documents = result.path / "documents"
        if result.body_id:
            self.stdout.write(
                f"{result.documents:,} documents that run {result.run_id} waits for, in {result.files} files under "
                f"{documents}; its body ({result.body_id}) under {result.path / 'body'}"
            )
        else:
            self.stdout.write(
                f"{result.documents:,} documents of {project.name!r} in {result.files} files under {documents}"
            )
