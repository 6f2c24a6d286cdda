"""python manage.py export_documents PROJECT [--format jsonl|csv] [--output FILE]"""

import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from annotation.management.commands.import_documents import project_by_name_or_id
from annotation.services.audit import audit_record
from annotation.services.exports import EXPORT_FORMATS, export_stream


class Command(BaseCommand):
    help = "Export a project's documents with their labels, annotations and predictions (streamed)."

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="jsonl")
        parser.add_argument("--output", "-o", help="file to write; default standard output")

    def handle(self, *args, **options):
        project = project_by_name_or_id(options["project"])
        total = project.documents.count()
        out = open(options["output"], "w", encoding="utf-8", newline="") if options["output"] else sys.stdout
        try:
            with tqdm(total=total, unit="doc", disable=not options["output"], file=sys.stderr) as bar:
                for piece in export_stream(project, options["format"]):
                    out.write(piece)
                    bar.update(piece.count("\n") if options["format"] == "jsonl" else 0)
        finally:
            if options["output"]:
                out.close()
        audit_record(
            action="export.documents", project=project, after={"format": options["format"], "documents": total}
        )
        if options["output"]:
            self.stderr.write(f"{total:,} documents written to {options['output']}")
