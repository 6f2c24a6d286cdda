"""python manage.py load_demo: the demo project, its taxonomy, 300+ Docket-written documents and demo users."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from annotation.models import Membership, Project
from annotation.services.imports import ImportOptions, documents_import
from annotation.services.projects import project_create, taxonomy_template

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_PROJECT = "Northwind privacy review (demo)"
# Development-only accounts, printed on purpose so a new user can log in at once.
DEMO_USERS = [
    ("admin", "docket-admin", "admin", True),
    ("reviewer1", "docket-review", "reviewer", False),
    ("reviewer2", "docket-review", "reviewer", False),
]


class Command(BaseCommand):
    help = "Load the demo project and demo users (idempotent). For local use only: the passwords are public."

    def handle(self, *args, **options):
        users = {}
        with transaction.atomic():
            for username, password, _role, is_admin in DEMO_USERS:
                user, created = get_user_model().objects.get_or_create(
                    username=username, defaults={"is_staff": is_admin, "is_superuser": is_admin}
                )
                if created:
                    user.set_password(password)
                    user.save(update_fields=["password"])
                users[username] = user
        project = Project.objects.filter(name=DEMO_PROJECT).first()
        if project is None:
            template = taxonomy_template("opp115")
            project = project_create(
                name=DEMO_PROJECT,
                description="Policy clauses, privacy-review notes, incidents and data requests from the "
                "fictional Northwind Labs, labelled with the OPP-115 data-practice categories.",
                multi_label=True,
                labels=template["labels"],
                created_by=users["admin"],
                fast_retrain_every=10,
                query_strategy="diverse_rare_uncertainty",
            )
            batch = documents_import(
                project=project,
                path=DEMO_DIR / "documents.jsonl",
                options=ImportOptions(label_field="labels"),
                user=users["admin"],
            )
            self.stdout.write(
                f"Demo project created: {batch.created_count} documents, {batch.annotation_count} with gold labels."
            )
        else:
            self.stdout.write("Demo project already loaded.")
        for username, _password, role, _is_admin in DEMO_USERS:
            Membership.objects.get_or_create(project=project, user=users[username], defaults={"role": role})
        self.stdout.write("Demo accounts (local use only):")
        for username, password, role, _ in DEMO_USERS:
            self.stdout.write(f"  {username:<10} password {password:<14} ({role})")
