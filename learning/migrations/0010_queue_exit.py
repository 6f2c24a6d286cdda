# Documents that leave the queue are recorded by the database (a row trigger on the document's status, whoever
# changes it) for the next rescore, which lowers their priority scores so the queue's scored route stops walking
# past every labeled document (learning.models.QueueExit). Priority rows of documents that left the queue before
# this migration are lowered here. SQLite (`make run`) gets the table and no trigger: its queue is small.

from django.db import migrations, models

FORWARD = """
CREATE OR REPLACE FUNCTION docket_document_leaves_queue() RETURNS trigger AS $$
BEGIN
    INSERT INTO learning_queueexit (document_id, project_id) VALUES (NEW.id, NEW.project_id);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER docket_document_leaves_queue AFTER UPDATE OF status ON annotation_document
    FOR EACH ROW WHEN (OLD.status = 'queued' AND NEW.status <> 'queued')
    EXECUTE FUNCTION docket_document_leaves_queue();
UPDATE learning_queuepriority q SET score = '-Infinity'
    FROM annotation_document d WHERE d.id = q.document_id AND d.status <> 'queued';
"""

BACKWARD = """
DROP TRIGGER IF EXISTS docket_document_leaves_queue ON annotation_document;
DROP FUNCTION IF EXISTS docket_document_leaves_queue();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0019_document_queue_order_idx"),
        ("learning", "0009_queue_priority_probabilities_array"),
    ]

    operations = [
        migrations.CreateModel(
            name="QueueExit",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("document_id", models.BigIntegerField()),
                ("project_id", models.BigIntegerField(db_index=True)),
            ],
        ),
        migrations.RunPython(forward, backward),
    ]
