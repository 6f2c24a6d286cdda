# Stop-and-start upgrade: code before it reads and writes the probabilities as JSON objects (docs/deploy.md).
#
# Queue priorities keep their probabilities as an array in the order of the label keys their model version
# wrote them in (PriorityLabelKeys), instead of a JSON object that repeated every key in every row: a row of
# twelve labels goes from about 440 bytes to about 130, and a rescore writes it by binary COPY. Existing rows
# are converted both ways; on PostgreSQL in SQL (one UPDATE per project and model version), elsewhere
# (SQLite, `make run`) row by row.

import math

import django.db.models.deletion
from django.db import migrations, models

import learning.models


def _keys_in_order(rows) -> list[str]:
    """Every key of the rows, in the order they first appear."""
    keys: dict[str, None] = {}
    for probabilities in rows:
        keys.update(dict.fromkeys(probabilities or {}))
    return list(keys)


def objects_to_arrays(apps, schema_editor):
    QueuePriority = apps.get_model("learning", "QueuePriority")
    PriorityLabelKeys = apps.get_model("learning", "PriorityLabelKeys")
    db = schema_editor.connection.alias
    scored = QueuePriority.objects.using(db).filter(model_version__isnull=False)
    pairs = scored.values_list("project_id", "model_version").distinct().order_by()
    for project_id, version in list(pairs):
        rows = scored.filter(project_id=project_id, model_version=version)
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(
                    "SELECT DISTINCT jsonb_object_keys(probabilities) FROM learning_queuepriority "
                    "WHERE project_id = %s AND model_version = %s",
                    [project_id, version],
                )
                keys = sorted(row[0] for row in cursor.fetchall())
                PriorityLabelKeys.objects.using(db).create(project_id=project_id, model_version=version, label_keys=keys)
                cursor.execute(
                    "UPDATE learning_queuepriority SET probability_values = ARRAY(SELECT "
                    "coalesce((probabilities->>k)::real, 'NaN'::real) FROM unnest(%s::text[]) WITH ORDINALITY u(k, i) "
                    "ORDER BY i) WHERE project_id = %s AND model_version = %s",
                    [keys, project_id, version],
                )
            continue
        keys = _keys_in_order(rows.values_list("probabilities", flat=True))
        PriorityLabelKeys.objects.using(db).create(project_id=project_id, model_version=version, label_keys=keys)
        for row in rows.only("pk", "probabilities"):
            row.probability_values = [float((row.probabilities or {}).get(key, math.nan)) for key in keys]
            row.save(update_fields=["probability_values"])


def arrays_to_objects(apps, schema_editor):
    QueuePriority = apps.get_model("learning", "QueuePriority")
    PriorityLabelKeys = apps.get_model("learning", "PriorityLabelKeys")
    db = schema_editor.connection.alias
    for label_keys in PriorityLabelKeys.objects.using(db).all():
        keys = list(label_keys.label_keys)
        rows = QueuePriority.objects.using(db).filter(
            project_id=label_keys.project_id, model_version=label_keys.model_version
        )
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE learning_queuepriority SET probabilities = coalesce((SELECT jsonb_object_agg(k, round(p::numeric, 4)) "
                    "FROM unnest(%s::text[], probability_values) u(k, p) WHERE k IS NOT NULL AND p IS NOT NULL AND p <> 'NaN'), '{}') "
                    "WHERE project_id = %s AND model_version = %s",
                    [keys, label_keys.project_id, label_keys.model_version],
                )
            continue
        for row in rows.only("pk", "probability_values"):
            values = row.probability_values or []
            row.probabilities = {k: p for k, p in zip(keys, values, strict=False) if not math.isnan(p)}
            row.save(update_fields=["probabilities"])


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0016_project_webhook_events"),
        ("learning", "0008_model_version_train_label_counts"),
    ]

    operations = [
        migrations.CreateModel(
            name="PriorityLabelKeys",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("model_version", models.PositiveIntegerField()),
                ("label_keys", models.JSONField(default=list)),
                (
                    "project",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="annotation.project"
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("project", "model_version"), name="priority_label_keys_unique")
                ],
            },
        ),
        migrations.AddField(
            model_name="queuepriority",
            name="probability_values",
            field=learning.models.LabelProbabilitiesField(blank=True, default=list),
        ),
        migrations.RunPython(objects_to_arrays, arrays_to_objects, elidable=False),
        migrations.RemoveField(model_name="queuepriority", name="probabilities"),
        migrations.RenameField(model_name="queuepriority", old_name="probability_values", new_name="probabilities"),
    ]
