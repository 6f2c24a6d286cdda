"""python manage.py export_model PROJECT [--version N] --out DIR

Writes a model version (default: the active one) as a self-contained bundle that `SetFitModel.from_pretrained`
loads anywhere, with its label map, taxonomy version, thresholds, checksums and a manifest; the corpus-scoring
job (learning/ml/spark_scoring.py, docs/scale.md) reads it.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_documents import project_by_name_or_id
from learning.exceptions import BundleUnavailable
from learning.services import bundle_version, model_bundle_export


class Command(BaseCommand):
    help = "Export a model version as a self-contained bundle (SetFit format, label map, checksums, manifest)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Django gives every command a --version (its own); here --version is the model's, so ours replaces it.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--version", type=int, dest="number", help="model version number (default: the active one)")
        parser.add_argument("--out", required=True, type=Path, help="directory to create (must not exist or be empty)")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        try:
            version = bundle_version(project=project, number=options["number"])
            path = model_bundle_export(version=version, out_dir=options["out"])
        except (BundleUnavailable, FileExistsError) as error:
            raise CommandError(str(error)) from error
        self.stdout.write(
            f"Model v{version.number} of {project.name!r} (taxonomy v{version.taxonomy_version}) written to {path}"
        )
