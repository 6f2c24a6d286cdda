"""python manage.py import_scores PROJECT SCORED.parquet

Stores the probabilities of a corpus scored by the Spark job (learning/ml/spark_scoring.py) as the project's
queue scores, creating documents for rows with a `text` column and an unknown id; nothing is scored again.
"""

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_documents import project_by_name_or_id
from learning.exceptions import ScoresRejected
from learning.services import scored_corpus_import


class Command(BaseCommand):
    help = "Import a scored corpus (Parquet from the Spark job): documents and their probabilities, no re-scoring."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("path", help="the job's Parquet output (a directory or one file)")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        try:
            result = scored_corpus_import(project=project, path=options["path"])
        except (ScoresRejected, FileNotFoundError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"{result.rows:,} scored rows under model v{result.model_version}: {result.scored:,} queued documents "
            f"took their scores ({result.created:,} new), {result.not_queued:,} already labeled, "
            f"{result.unmatched:,} unknown ids without text, {result.duplicates:,} duplicate texts; "
            f"{result.queue_reordered:,} queue places written."
        )
