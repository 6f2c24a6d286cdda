"""python manage.py export_documents PROJECT [--format FORMAT] [--output FILE] [--label-config FILE]"""

import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.management.commands.import_documents import project_by_name_or_id
from annotation.services.exports import (
    EXPORT_FORMATS,
    FORMATS,
    export_dataset_directory,
    export_record,
    export_stream,
    label_studio_config,
)


class Command(BaseCommand):
    help = (
        "Export a project's documents with their labels, annotations and predictions (streamed): Docket's JSONL "
        "or CSV, Label Studio tasks, doccano or Prodigy JSONL, Hugging Face Parquet or a dataset directory."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
        parser.add_argument(
            "--output",
            "-o",
            help="file to write; default standard output. For hf-dataset, a directory (save_to_disk), or a .zip",
        )
        parser.add_argument("--label-config", help="also write a Label Studio labeling config (XML) for the project")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        fmt, output = options["format"], options["output"]
        total = project.documents.count()
        if options["label_config"]:
            with open(options["label_config"], "w", encoding="utf-8") as config:
                config.write(label_studio_config(project))
        if fmt == "hf-dataset" and output and not output.endswith(".zip"):
            export_dataset_directory(project, output)
        elif FORMATS[fmt].binary:
            if not output and sys.stdout.isatty():
                raise CommandError(f"{fmt} is binary: name a file with --output.")
            with open(output, "wb") if output else sys.stdout.buffer as out:
                for piece in export_stream(project, fmt):
                    out.write(piece)
        else:
            self._write_text(project, fmt, output, total)
        export_record(project=project, fmt=fmt, documents=total)
        if output:
            self.stderr.write(f"{total:,} documents written to {output}")

    def _write_text(self, project, fmt, output, total):
        out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            with tqdm(total=total, unit="doc", disable=not output, file=sys.stderr) as bar:
                for piece in export_stream(project, fmt):
                    out.write(piece)
                    bar.update(piece.count("\n") if fmt != "csv" else 0)
        finally:
            if output:
                out.close()
