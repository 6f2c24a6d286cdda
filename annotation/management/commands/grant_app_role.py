"""python manage.py grant_app_role ROLE: run as the tables' owner, after `migrate`, to let the app's role in.

The app runs as a PostgreSQL role that owns nothing, is no superuser and cannot become the owner; it reads and
writes every table except the audit log, where it may only INSERT and SELECT. So no bug, script or stolen app
credential can rewrite, delete, truncate or switch off the protection of the log (docs/security.md).
Running it again is harmless; it refuses a role that would defeat the point.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from psycopg2 import sql

from annotation.models import AuditEvent

# Privileges the app's role ends up with on the audit log, and those it must not have.
AUDIT_ALLOWED = ("SELECT", "INSERT")
AUDIT_REFUSED = ("UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class Command(BaseCommand):
    help = "Grant the app's PostgreSQL role what it needs, and only INSERT and SELECT on the audit log."

    def add_arguments(self, parser):
        parser.add_argument("role", help="the role the web processes and workers connect as, e.g. docket_app")

    def handle(self, *args, role: str, **options):
        if connection.vendor != "postgresql":
            raise CommandError("Database roles exist on PostgreSQL only; SQLite has no roles to grant.")
        audit_table = AuditEvent._meta.db_table
        with connection.cursor() as cursor:
            problem = self._unsafe(cursor, role)
            if problem:
                raise CommandError(problem)
            with transaction.atomic():
                for statement in self._grants(role, audit_table, connection.settings_dict["NAME"]):
                    cursor.execute(statement)
            for privilege in AUDIT_REFUSED:
                cursor.execute("SELECT has_table_privilege(%s, %s, %s)", [role, audit_table, privilege])
                if cursor.fetchone()[0]:
                    raise CommandError(f"{role} still holds {privilege} on {audit_table}; check grants to PUBLIC.")
        self.stdout.write(f"{role} may read and write Docket's tables; on {audit_table} only SELECT and INSERT.")

    def _unsafe(self, cursor, role: str) -> str:
        """Why `role` must not be the app's role, or an empty string."""
        cursor.execute("SELECT current_user")
        owner = cursor.fetchone()[0]
        cursor.execute("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
        row = cursor.fetchone()
        if row is None:
            return f"There is no role {role}; create it first (CREATE ROLE {role} LOGIN PASSWORD '...')."
        if role == owner:
            return f"{role} owns the tables; the app must connect as another role that owns nothing."
        if any(row):
            return f"{role} is a superuser or may create roles or bypass row security; use a plain LOGIN role."
        # A role that can SET ROLE to the owner (or inherits it) could TRUNCATE or disable the trigger.
        cursor.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", [role, owner])
        if cursor.fetchone()[0]:
            return f"{role} is a member of {owner} and could act as the owner; REVOKE {owner} FROM {role}."
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = %s",
            [role],
        )
        if cursor.fetchone()[0]:
            return f"{role} owns tables in this database; run `migrate` as the owner role only."
        return ""

    def _grants(self, role: str, audit_table: str, database: str) -> list[sql.Composed]:
        who, table, db = sql.Identifier(role), sql.Identifier(audit_table), sql.Identifier(database)
        return [
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, who),
            sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(who),
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(who),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(who),
            # Tables later migrations create get the same, so a new table never locks the app out.
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
            ).format(who),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {}").format(who),
            sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(table),
            sql.SQL("REVOKE ALL ON {} FROM {}").format(table, who),
            sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(table, who),
        ]
