"""On PostgreSQL, the database itself refuses to change or delete audit events.

The app never edits them (AuditEvent.save/delete raise), but a queryset update, a raw SQL statement or a
script could. The one change allowed is the foreign-key SET NULL that happens when a user or project is
deleted: the event stays, its actor_label keeps who it was.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION docket_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND NEW.id = OLD.id
       AND NEW.created_at = OLD.created_at
       AND NEW.action = OLD.action
       AND NEW.actor_label = OLD.actor_label
       AND NEW.target_type = OLD.target_type
       AND NEW.target_id = OLD.target_id
       AND NEW.before IS NOT DISTINCT FROM OLD.before
       AND NEW.after IS NOT DISTINCT FROM OLD.after
       AND (NEW.actor_id IS NOT DISTINCT FROM OLD.actor_id OR NEW.actor_id IS NULL)
       AND (NEW.project_id IS NOT DISTINCT FROM OLD.project_id OR NEW.project_id IS NULL) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS docket_audit_append_only ON annotation_auditevent;
CREATE TRIGGER docket_audit_append_only BEFORE UPDATE OR DELETE ON annotation_auditevent
    FOR EACH ROW EXECUTE FUNCTION docket_audit_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS docket_audit_append_only ON annotation_auditevent;
DROP FUNCTION IF EXISTS docket_audit_append_only();
"""


def create_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0003_review_quality")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
