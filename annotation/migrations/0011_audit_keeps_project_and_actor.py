"""Audit events keep their project and actor whatever is deleted later, and the database refuses every change.

The foreign keys had ON DELETE SET NULL, so deleting a project or a user rewrote its events (and the trigger
had to let that through, which also let `UPDATE ... SET project_id = NULL` through). Now the columns carry no
constraint, the project's name is kept as text beside its id, and the trigger refuses every UPDATE and DELETE.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

STRICT_TRIGGER = """
CREATE OR REPLACE FUNCTION docket_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql;
"""

FILL_PROJECT_LABELS = """
ALTER TABLE annotation_auditevent DISABLE TRIGGER docket_audit_append_only;
UPDATE annotation_auditevent e SET project_label = p.name FROM annotation_project p WHERE p.id = e.project_id;
ALTER TABLE annotation_auditevent ENABLE TRIGGER docket_audit_append_only;
"""

# 0004's function, for going back.
LENIENT_TRIGGER = """
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
"""


def fill_project_labels(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FILL_PROJECT_LABELS, params=None)
        return
    AuditEvent = apps.get_model("annotation", "AuditEvent")
    Project = apps.get_model("annotation", "Project")
    for project in Project.objects.all():
        AuditEvent.objects.filter(project_id=project.pk).update(project_label=project.name)


def strict_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(STRICT_TRIGGER, params=None)


def lenient_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(LENIENT_TRIGGER, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0010_legal_review"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="project_label",
            field=models.CharField(
                blank=True, help_text="The project's name at the time, kept even if the project goes.", max_length=200
            ),
        ),
        migrations.RunPython(fill_project_labels, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="project",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="annotation.project",
            ),
        ),
        migrations.RunPython(strict_trigger, lenient_trigger),
    ]
