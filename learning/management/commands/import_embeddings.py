"""python manage.py import_embeddings PROJECT --body BODY_ID PARQUET

Stores the vectors written by the Spark embedding job (learning/ml/spark_embedding.py) in the project's
embedding cache under BODY_ID, as a worker would have stored them; a fine-tune waiting for them then goes on
(docs/scale.md). Refused, with nothing stored, for another body, another dimension or another project's ids;
the vectors of documents deleted since the export are left out and counted.
"""

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_documents import project_by_name_or_id
from learning.exceptions import EmbeddingsRejected
from learning.services import embeddings_import


class Command(BaseCommand):
    help = "Import embeddings made on Spark into the project's embedding cache (no encoding in Docket)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--body", required=True, dest="body_id", help="the body id they were embedded with")
        parser.add_argument("path", help="the job's Parquet output (a directory or one file)")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        try:
            result = embeddings_import(project=project, body_id=options["body_id"], path=options["path"])
        except (EmbeddingsRejected, FileNotFoundError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{result.rows:,} rows: {result.documents:,} documents' embeddings ({result.dimension} dimensions) stored "
            f"under {result.body_id} in {result.shards} shards."
        )
        if result.deleted:
            examples = ", ".join(str(pk) for pk in result.deleted[:5])
            self.stdout.write(
                f"{len(result.deleted):,} ids are of documents deleted since the export (e.g. {examples}): "
                "their vectors were left out."
            )
        for run_id, left in sorted(result.waiting.items()):
            if left:
                self.stdout.write(f"Run {run_id} still waits for {left:,} documents: embed and import them too.")
            else:
                self.stdout.write(f"Run {run_id} has every embedding it waited for: it goes on by itself.")
