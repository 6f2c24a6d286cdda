# Explore's search vectors move out of the document's row into a table of their own, filled by a worker after
# the documents are committed (annotation/services/search_index.py). Computing and GIN-indexing the stored
# generated column of 0015 was about 70% of PostgreSQL's time in an import's insert. A statement-level trigger
# records every inserted document as pending (one INSERT ... SELECT per statement, whoever writes: import, API,
# admin, demo), and a row trigger does the same when a document's text changes; Explore matches pending documents
# on their text directly, so search is never behind. The existing vectors are copied over from the column.
# SQLite (`make run`) has no text search: the two tables are created empty and nothing else happens.

import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

DOCUMENT = "annotation_document"
VECTOR = "annotation_documentsearchvector"
PENDING = "annotation_documentsearchpending"

FORWARD = f"""
ALTER TABLE {VECTOR} ADD CONSTRAINT documentsearchvector_document_fk
    FOREIGN KEY (document_id) REFERENCES {DOCUMENT} (id) ON DELETE CASCADE;
ALTER TABLE {PENDING} ADD CONSTRAINT documentsearchpending_document_fk
    FOREIGN KEY (document_id) REFERENCES {DOCUMENT} (id) ON DELETE CASCADE;
INSERT INTO {VECTOR} (document_id, project_id, vector) SELECT id, project_id, search_vector FROM {DOCUMENT};
ALTER TABLE {DOCUMENT} DROP COLUMN search_vector;
CREATE INDEX document_search_vector_idx ON {VECTOR} USING gin (vector);

CREATE OR REPLACE FUNCTION docket_document_search_pending() RETURNS trigger AS $$
BEGIN
    INSERT INTO {PENDING} (document_id) SELECT id FROM new_documents ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER docket_document_search_pending AFTER INSERT ON {DOCUMENT}
    REFERENCING NEW TABLE AS new_documents FOR EACH STATEMENT EXECUTE FUNCTION docket_document_search_pending();

CREATE OR REPLACE FUNCTION docket_document_search_text_changed() RETURNS trigger AS $$
BEGIN
    DELETE FROM {VECTOR} WHERE document_id = NEW.id;
    INSERT INTO {PENDING} (document_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER docket_document_search_text_changed AFTER UPDATE OF text ON {DOCUMENT}
    FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text) EXECUTE FUNCTION docket_document_search_text_changed();
"""

BACKWARD = f"""
DROP TRIGGER IF EXISTS docket_document_search_text_changed ON {DOCUMENT};
DROP FUNCTION IF EXISTS docket_document_search_text_changed();
DROP TRIGGER IF EXISTS docket_document_search_pending ON {DOCUMENT};
DROP FUNCTION IF EXISTS docket_document_search_pending();
DROP INDEX IF EXISTS document_search_vector_idx;
ALTER TABLE {DOCUMENT} ADD COLUMN search_vector tsvector GENERATED ALWAYS AS
    (to_tsvector('english'::regconfig, COALESCE(text, ''::text))) STORED;
CREATE INDEX document_search_vector_idx ON {DOCUMENT} USING gin (search_vector);
"""


def move_vectors(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def restore_column(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0017_query_strategy_default_diverse_rare_uncertainty'),
    ]

    operations = [
        migrations.CreateModel(
            name='DocumentSearchPending',
            fields=[
                ('document', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='+', serialize=False, to='annotation.document')),
            ],
        ),
        migrations.CreateModel(
            name='DocumentSearchVector',
            fields=[
                ('document', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, primary_key=True, related_name='+', serialize=False, to='annotation.document')),
                ('vector', django.contrib.postgres.search.SearchVectorField()),
                ('project', models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='annotation.project')),
            ],
        ),
        migrations.RunPython(move_vectors, restore_column),
    ]
