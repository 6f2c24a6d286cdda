"""python manage.py prune_artifacts [PROJECT ...] [--keep 3] [--dry-run]

Deletes the files of model versions nobody can promote or roll back to any more, embedding caches that
no kept model uses, and fine-tune checkpoints of runs that have ended; see learning/retention.py for what is
kept. Run it daily (cron or a systemd timer).
"""

from django.core.management.base import BaseCommand, CommandError

from annotation.management.commands.import_documents import project_by_name_or_id
from annotation.models import Project
from learning.retention import KEEP_DEFAULT, artifacts_prune, checkpoints_prune


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


class Command(BaseCommand):
    help = "Delete model files and embedding caches that no longer serve; keep the newest versions to go back to."

    def add_arguments(self, parser):
        parser.add_argument("projects", nargs="*", help="project ids or exact names (default: every project)")
        parser.add_argument(
            "--keep",
            type=int,
            default=KEEP_DEFAULT,
            help=f"ready or retired versions to keep per project besides the active one (default {KEEP_DEFAULT})",
        )
        parser.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")

    def handle(self, *args, **options):
        if options["keep"] < 1:
            raise CommandError("--keep must be at least 1: an admin needs a version to roll back to.")
        projects = [project_by_name_or_id(name) for name in options["projects"]] or list(Project.objects.order_by("pk"))
        total = 0
        for project in projects:
            result = artifacts_prune(project=project, keep=options["keep"], dry_run=options["dry_run"])
            total += result.bytes_freed
            versions = ", ".join(f"v{n}" for n in result.versions) or "no versions"
            self.stdout.write(
                f"{project.name}: {versions}, {result.shards} embedding shard(s) of {len(result.bodies)} old "
                f"bodies, {_megabytes(result.bytes_freed)}"
            )
        runs = checkpoints_prune(projects=projects if options["projects"] else None, dry_run=options["dry_run"])
        if runs:
            self.stdout.write(f"fine-tune checkpoints of ended runs: {', '.join(f'run {n}' for n in runs)}")
        verb = "would free" if options["dry_run"] else "freed"
        self.stdout.write(self.style.SUCCESS(f"{verb} {_megabytes(total)} in {len(projects)} project(s)"))
